"""`phoenix console`: the operator's web console on loopback (see docs/console.md)."""
