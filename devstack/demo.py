"""`phoenix demo`: the whole pipeline on one machine, retry backoffs 10x faster (`--speed 1`: real time).

Starts the local stack on free ports with a fresh data dir, grants a demo user some tokens,
submits four creations through the API (an image, a video, a prompt the safety filter refuses
and a prompt whose generation fails twice before it works), shows their progress, then prints
each creation's final state, each execution's step trace, the user's ledger, and where the
media files are. Exits 0 when every creation ended as the test prompts promise.

The `#flaky` creation takes longest: it waits out creation.yaml's backoff for generation (15 s,
then 60 s). By default the local engine's clock runs those waits 10x faster (`--speed 1` for real
time), so the whole demo takes well under half a minute; the banner, each execution's log and
stats, and the traces below say so.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

DEMO_USER = "demo-user"
GRANT = 30
TIMEOUT_SECONDS = 240
DEMO_SPEED = 10.0                    # the engine's waits run this many times faster than declared

# (label, request, what the demo expects)
SUBMISSIONS = [
    ("image", {"type": "image", "prompt": "a lighthouse at dawn, watercolor", "options": {"aspectRatio": "16:9"}},
     "draft"),
    ("video", {"type": "video", "prompt": "waves rolling onto a beach at sunset",
               "options": {"aspectRatio": "16:9", "durationSeconds": 4}}, "draft"),
    ("blocked", {"type": "image", "prompt": "a prompt the safety filter refuses #blocked"}, "failed"),
    ("flaky", {"type": "image", "prompt": "a red fox in the snow #flaky"}, "draft"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="phoenix demo", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path(".data/demo"),
                   help="a dir the demo creates, then wipes and reuses on each run; an existing "
                        "non-empty dir it did not create is refused (default .data/demo)")
    p.add_argument("--in-process", action="store_true", help="run step jobs in-process instead of as subprocesses")
    p.add_argument("--speed", type=_speed, default=DEMO_SPEED,
                   help=f"run the workflow's waits (retry backoffs) this many times faster (default {DEMO_SPEED:g}; "
                        f"1 for real time)")
    args = p.parse_args(argv)

    from devstack.stack import LocalStack, StackConfig
    from localcloud.workflows import RealClock

    data_dir = args.data_dir
    try:
        claim_data_dir(data_dir)
    except DataDirRefused as exc:
        print(f"phoenix demo: {exc}", file=sys.stderr)
        return 2
    config = StackConfig(data_dir=data_dir, port=0, jobs_mode="inprocess" if args.in_process else "process",
                         clock=RealClock(speed=args.speed))
    say(f"starting the local stack (jobs: {config.jobs_mode}, data: {data_dir})")
    if args.speed != 1:
        say(f"  the engine's clock runs waits {args.speed:g}x faster than creation.yaml declares "
            f"(a 60 s backoff takes {60 / args.speed:g} s); --speed 1 for real time")
    with LocalStack(config) as stack:
        for name, url in stack.urls.items():
            say(f"  {name:<11} {url}")
        return run_demo(stack, data_dir)


# Written into every data dir the demo creates: only a dir holding it is ever wiped.
OWNER_MARK = ".phoenix-demo"


class DataDirRefused(Exception):
    """The data dir holds something the demo did not put there."""


def claim_data_dir(data_dir: Path) -> None:
    """An empty data dir for this run, marked as the demo's. A dir the demo made before (it holds
    the mark) is wiped; a missing or empty one is used; anything else is refused, untouched."""
    if data_dir.exists() and not data_dir.is_dir():
        raise DataDirRefused(f"{data_dir} is a file, not a directory; pick another --data-dir")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        if not (data_dir / OWNER_MARK).is_file():
            raise DataDirRefused(
                f"{data_dir} is not empty and was not created by phoenix demo; it is left untouched. "
                "Pick another --data-dir (a new or empty one), or remove it yourself")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / OWNER_MARK).write_text("made by phoenix demo: wiped by its next run\n")


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value:g} is out of range: a speed between 1 (real time) and 1000")
    return value


def say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(stack, data_dir: Path) -> int:
    from api.auth import make_local_token

    stack.store.grant(DEMO_USER, GRANT, "demo:welcome-grant")
    token = make_local_token(DEMO_USER, stack.settings.local_auth_secret)
    client = httpx.Client(base_url=stack.urls["api"], headers={"Authorization": f"Bearer {token}"}, timeout=30)

    say(f"\n{DEMO_USER} has {client.get('/v1/me').json()['tokens']} tokens; submitting {len(SUBMISSIONS)} creations")
    ids: dict[str, str] = {}
    for label, body, _ in SUBMISSIONS:
        r = client.post("/v1/creations", json=body, headers={"Idempotency-Key": f"demo-{label}"})
        if r.status_code != 202:
            say(f"  {label}: the API answered {r.status_code}: {r.text}")
            return 1
        answer = r.json()
        ids[label] = answer["id"]
        say(f"  {label:<8} {answer['id']}  cost {answer['cost']:>2}  balance {answer['balance']}")

    finals = watch(client, ids)
    ok = print_results(stack, client, ids, finals, data_dir)
    client.close()
    return 0 if ok else 1


def watch(client: httpx.Client, ids: dict[str, str]) -> dict[str, dict]:
    """Follows the creations on the API's event stream (GET /v1/creations/events), printing each
    status change, until every one is draft or failed; reconnects with Last-Event-ID if the
    stream ends first."""
    say("\nprogress:")
    started = time.monotonic()
    labels = {cid: label for label, cid in ids.items()}
    finals: dict[str, dict] = {}
    last_id = None
    while len(finals) < len(ids) and time.monotonic() - started < TIMEOUT_SECONDS:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        with client.stream("GET", "/v1/creations/events", headers=headers,
                           timeout=httpx.Timeout(30, read=TIMEOUT_SECONDS)) as stream:
            if stream.status_code != 200:
                break  # 204: nothing active is left to follow
            for event_id, event, data in sse_events(stream.iter_lines()):
                last_id = event_id or last_id
                creation = json.loads(data)
                label = labels.get(creation.get("id"))
                if event != "status" or label is None:
                    continue
                say(f"  {time.monotonic() - started:6.1f}s  {label:<8} {creation['status']}")
                if creation["status"] in ("draft", "failed"):
                    finals[label] = creation
    for label, cid in ids.items():
        if label not in finals:
            creation = client.get(f"/v1/creations/{cid}").json()
            if creation["status"] in ("draft", "failed"):
                finals[label] = creation
            else:
                say(f"  {label}: still {creation['status']} after {TIMEOUT_SECONDS}s")
    return finals


def sse_events(lines):
    """(id, event, data) of each server-sent event in a stream of lines; comments are skipped."""
    event_id, event, data = None, "message", []
    for line in lines:
        if not line:
            if data:
                yield event_id, event, "\n".join(data)
            event, data = "message", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "event":
                event = value
            elif field == "data":
                data.append(value)


def print_results(stack, client, ids, finals, data_dir: Path) -> bool:
    ok = True
    say("\nfinal state:")
    for label, _, expected in SUBMISSIONS:
        creation = finals.get(label)
        status = creation["status"] if creation else "unfinished"
        verdict = "as expected" if status == expected else f"EXPECTED {expected}"
        ok &= status == expected
        detail = ""
        if creation and creation.get("error"):
            detail = f"  {creation['error']['code']}: {creation['error']['message']}"
        if creation and creation.get("media"):
            detail = f"  {creation['media']['contentType']}, {creation['media']['bytes']:,} bytes"
        say(f"  {label:<8} {status:<8} ({verdict}){detail}")

    say("\nstep traces (one Workflows execution per creation):")
    for label, cid in ids.items():
        creation = stack.store.get_creation(cid)
        for execution_name in creation.execution_ids if creation else []:
            print_trace(stack.engine, label, execution_name)

    say(f"\nledger of {DEMO_USER}:")
    for entry in stack.store.ledger(DEMO_USER):
        sign = "+" if entry.kind.value in ("grant", "refund") else "-"
        say(f"  {entry.at:%H:%M:%S}  {entry.kind.value:<6} {sign}{entry.amount:<3} {entry.id}")
    balance = stack.store.balance(DEMO_USER)
    findings = stack.store.audit()
    say(f"  balance {balance}; audit: {'books balance' if not findings else findings}")
    ok &= not findings

    out = data_dir / "out"
    out.mkdir(parents=True, exist_ok=True)
    say(f"\nmedia (downloaded to {out.resolve()}):")
    for label, creation in finals.items():
        media = creation.get("media")
        if not media:
            continue
        for kind, url in (("original", media["url"]), ("thumbnail", media["thumbnailUrl"])):
            suffix = Path(url.split("?", 1)[0]).suffix
            target = out / f"{label}-{kind}{suffix}"
            target.write_bytes(httpx.get(url, timeout=30).raise_for_status().content)
            say(f"  {label:<8} {kind:<9} {target}")
    say(
        "\n" + ("demo finished: every creation ended as expected" if ok else "demo finished with surprises (see above)")
    )
    return ok


def print_trace(engine, label: str, execution_name: str) -> None:
    execution = engine.get_execution(execution_name)
    speed = getattr(engine.clock, "speed", 1)
    note = f"  (waits ran {speed:g}x faster than declared)" if speed != 1 else ""
    say(f"\n  {label}: {execution_name.rsplit('/', 1)[1]}  {execution['state']}  {execution.get('duration', '')}{note}")
    entries = engine.step_entries(execution_name)
    runs: dict[str, int] = {}
    for e in entries:
        if e["routine"] == "main" and e["stepType"] == "STEP_SUBWORKFLOW_CALL":
            runs[e["step"]] = runs.get(e["step"], 0) + 1
    seen = set()
    for e in entries:
        if e["routine"] != "main" or e["step"] in seen or e["stepType"] == "STEP_SUBWORKFLOW_CALL":
            continue
        if e["step"] == "run_pipeline":
            continue
        seen.add(e["step"])
        last = [x for x in entries if x["routine"] == "main" and x["step"] == e["step"]][-1]
        duration = _seconds(e["createTime"], last["updateTime"])
        retries = max(runs.get(e["step"], 1) - 1, 0)
        state = last["state"].replace("STATE_", "").lower()
        waits = [x["details"]["delaySeconds"] for x in entries
                 if x["routine"] == "main" and x["step"] == e["step"] and x["stepType"] == "STEP_RETRY"]
        backoff = ""
        if waits:
            backoff = f" after backoffs of {', '.join(f'{w:g}' for w in waits)} s"
            if speed != 1:
                backoff += f" (waited {', '.join(f'{w / speed:g}' for w in waits)} s)"
        say(f"    {e['step']:<18} {state:<10} {duration:7.2f}s" + (f"  retries {retries}{backoff}" if retries else ""))
    if execution.get("error"):
        say(f"    error: {execution['error'].get('payload')}")


def _seconds(start: str, end: str) -> float:
    def parse(ts: str) -> datetime:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


if __name__ == "__main__":
    sys.exit(main())
