"""Firestore security rules and live status against Google's Firestore emulator."""
from tests.support.firestore import firestore_emulator, firestore_project  # noqa: F401
