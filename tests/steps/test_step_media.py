"""generate, thumbnail and upload: media through staging to its final keys, each step fenced,
idempotent and honest about what may be retried."""
from __future__ import annotations

import hashlib

from creations.model import Status
from creations.pipeline import StepServices
from creations.storage import MediaStorage
from steps import ExitCode


def fail_and_replay(stack, creation_id: str) -> None:
    """Attempt 1 fails at its current step (refunded), and an operator replays it."""
    assert stack.run("refund", creation_id).code == 0
    stack.replay(creation_id)
    assert stack.run("debit_check", creation_id, 2).code == 0
    assert stack.run("mark_processing", creation_id, 2).code == 0


def services_on(stack, endpoint_url: str) -> StepServices:
    """The test's store, with media storage reached at another endpoint."""
    settings = stack.settings.model_copy(update={"s3_endpoint_url": endpoint_url})
    return StepServices(settings, store=stack.store, storage=MediaStorage.from_settings(settings),
                        generator=stack.services.generator)


# --- generate -----------------------------------------------------------------------------------

def test_generate_stages_the_image_and_checkpoints_it(stack):
    creation = stack.create("a red fox")
    stack.through(creation.id, "mark_processing")
    calls = stack.calls.total
    result = stack.run("generate", creation.id)
    assert result.code == 0
    assert stack.calls.total == calls + 1

    checkpoint = stack.get(creation.id).checkpoint("generate")
    output = checkpoint.output
    assert checkpoint.attempt == 1
    assert output["contentType"] == "image/png"
    assert output["key"].startswith(f"staging/{creation.id}/1/original-")
    assert output["key"].endswith(".png")
    staged = stack.storage.head(output["key"])
    assert (staged.sha256, staged.bytes) == (output["sha256"], output["bytes"])
    assert result.final["outcome"] == "done"


def test_generate_twice_pays_the_provider_once(stack):
    creation = stack.create("a blue heron")
    stack.through(creation.id, "generate")
    first = stack.get(creation.id).checkpoint("generate")
    calls = stack.calls.total

    again = stack.run("generate", creation.id)
    assert again.code == 0
    assert again.final["outcome"] == "skipped"
    assert stack.calls.total == calls
    assert stack.get(creation.id).checkpoint("generate").to_dict() == first.to_dict()
    assert stack.staged(creation.id) == [first.output["key"]]


def test_generate_again_when_the_staged_original_is_gone(stack):
    creation = stack.create("a green lantern")
    stack.through(creation.id, "generate")
    key = stack.get(creation.id).checkpoint("generate").output["key"]
    stack.remove(key)
    calls = stack.calls.total

    assert stack.run("generate", creation.id).code == 0
    assert stack.calls.total == calls + 1
    output = stack.get(creation.id).checkpoint("generate").output
    assert stack.storage.head(output["key"]).sha256 == output["sha256"]


def test_generate_records_a_content_policy_refusal_as_not_retryable(stack):
    creation = stack.create("something #blocked")
    stack.through(creation.id, "mark_processing")
    result = stack.run("generate", creation.id)
    assert result.code == ExitCode.FAILED
    error = stack.get(creation.id).error
    assert (error.code, error.step, error.retryable) == ("CONTENT_POLICY", "generate", False)
    assert "safety filter" in error.message
    assert stack.get(creation.id).checkpoint("generate") is None
    assert stack.staged(creation.id) == []


def test_generate_after_a_flaky_provider_recovers(stack):
    creation = stack.create("a paper boat #flaky")
    stack.through(creation.id, "mark_processing")
    first = stack.run("generate", creation.id)
    assert first.code == ExitCode.FAILED
    assert stack.get(creation.id).error.retryable is True
    assert stack.run("generate", creation.id).code == ExitCode.FAILED  # the second 503
    assert stack.run("generate", creation.id).code == 0               # what the workflow's retry sees
    assert stack.get(creation.id).checkpoint("generate") is not None


def test_generate_for_a_superseded_attempt_calls_no_provider(stack):
    creation = stack.create("a comet #blocked")
    stack.through(creation.id, "mark_processing")
    assert stack.run("generate", creation.id).code == ExitCode.FAILED
    fail_and_replay(stack, creation.id)
    before = stack.get(creation.id).to_dict()
    calls = stack.calls.total

    assert stack.run("generate", creation.id, 1).code == ExitCode.STALE
    assert stack.calls.total == calls
    assert stack.get(creation.id).to_dict() == before


def test_generate_refuses_to_run_before_mark_processing(stack):
    creation = stack.create("an early bird")
    calls = stack.calls.total
    result = stack.run("generate", creation.id)
    assert result.code == ExitCode.FAILED
    error = stack.get(creation.id).error
    assert (error.code, error.retryable) == ("OUT_OF_ORDER", False)
    assert stack.calls.total == calls


def test_a_small_video_runs_through_every_step(stack):
    creation = stack.create("a spinning top", type="video", options={"durationSeconds": 1})
    stack.through(creation.id, "finalize")
    assert stack.calls.counts["predictLongRunning"] >= 1
    done = stack.get(creation.id)
    assert done.status is Status.DRAFT
    assert done.media["contentType"] == "video/mp4"
    assert done.media["key"].endswith("/original.mp4")
    thumb = stack.storage.head(done.media["thumbnailKey"])
    assert thumb.content_type == "image/jpeg" and thumb.bytes > 0
    assert stack.store.balance(stack.uid) == stack.GRANT - creation.cost


# --- thumbnail ----------------------------------------------------------------------------------

def test_thumbnail_is_made_from_the_staged_original(stack):
    creation = stack.create("a yellow tram")
    stack.through(creation.id, "thumbnail")
    current = stack.get(creation.id)
    thumb = current.checkpoint("thumbnail").output
    assert thumb["sourceSha256"] == current.checkpoint("generate").output["sha256"]
    assert thumb["contentType"] == "image/jpeg"
    assert thumb["key"].startswith(f"staging/{creation.id}/1/thumb-")
    data = stack.read(thumb["key"])
    assert data[:3] == b"\xff\xd8\xff"  # a JPEG
    assert hashlib.sha256(data).hexdigest() == thumb["sha256"]


def test_thumbnail_twice_keeps_the_first(stack):
    creation = stack.create("a violet kite")
    stack.through(creation.id, "thumbnail")
    first = stack.get(creation.id).checkpoint("thumbnail").to_dict()
    result = stack.run("thumbnail", creation.id)
    assert (result.code, result.final["outcome"]) == (0, "skipped")
    assert stack.get(creation.id).checkpoint("thumbnail").to_dict() == first


def test_thumbnail_of_undecodable_media_is_not_retryable(stack):
    creation = stack.create("a broken vase")
    stack.through(creation.id, "generate")
    # The staged original turns out not to be an image (what a corrupt provider answer looks like).
    key = stack.get(creation.id).checkpoint("generate").output["key"]
    stored = stack.storage.put_bytes(key, b"this is not a png", "image/png")

    def point_at_garbage(c):
        c.checkpoints["generate"].output.update(sha256=stored.sha256, bytes=stored.bytes)
        return c
    stack.store.update_creation(creation.id, point_at_garbage)

    assert stack.run("thumbnail", creation.id).code == ExitCode.FAILED
    error = stack.get(creation.id).error
    assert (error.code, error.step, error.retryable) == ("MEDIA_ERROR", "thumbnail", False)


def test_thumbnail_storage_outage_is_retryable(stack, stopped_s3):
    creation = stack.create("a quiet pond")
    stack.through(creation.id, "generate")
    result = stack.run("thumbnail", creation.id, services=services_on(stack, stopped_s3.endpoint_url))
    assert result.code == ExitCode.FAILED
    error = stack.get(creation.id).error
    assert (error.code, error.step, error.retryable) == ("STORAGE_ERROR", "thumbnail", True)


def test_thumbnail_for_a_superseded_attempt_changes_nothing(stack):
    creation = stack.create("an old map")
    stack.through(creation.id, "generate")
    fail_and_replay(stack, creation.id)
    before = stack.get(creation.id).to_dict()
    assert stack.run("thumbnail", creation.id, 1).code == ExitCode.STALE
    assert stack.get(creation.id).to_dict() == before


# --- upload -------------------------------------------------------------------------------------

def test_upload_publishes_both_objects_under_the_final_keys(stack):
    creation = stack.create("a silver spoon")
    stack.through(creation.id, "upload")
    current = stack.get(creation.id)
    out = current.checkpoint("upload").output
    assert out["key"] == f"media/{stack.uid}/{creation.id}/original.png"
    assert out["thumbnailKey"] == f"media/{stack.uid}/{creation.id}/thumb.jpg"
    assert out["sha256"] == current.checkpoint("generate").output["sha256"]
    assert stack.storage.head(out["key"]).sha256 == out["sha256"]
    assert stack.storage.head(out["thumbnailKey"]).sha256 == current.checkpoint("thumbnail").output["sha256"]
    assert out["url"] and out["thumbnailUrl"]


def test_upload_twice_is_a_no_op(stack):
    creation = stack.create("a copper kettle")
    stack.through(creation.id, "upload")
    first = stack.get(creation.id).checkpoint("upload").to_dict()
    result = stack.run("upload", creation.id)
    assert (result.code, result.final["outcome"]) == (0, "skipped")
    assert stack.get(creation.id).checkpoint("upload").to_dict() == first


def test_upload_of_an_expired_staging_object_is_not_retryable(stack):
    creation = stack.create("a melting clock")
    stack.through(creation.id, "thumbnail")
    key = stack.get(creation.id).checkpoint("generate").output["key"]
    stack.remove(key)
    assert stack.run("upload", creation.id).code == ExitCode.FAILED
    error = stack.get(creation.id).error
    assert (error.code, error.step, error.retryable) == ("STAGED_MEDIA_MISSING", "upload", False)
    assert "replay" in error.message


def test_upload_for_a_superseded_attempt_changes_nothing(stack):
    creation = stack.create("a cold star")
    stack.through(creation.id, "thumbnail")
    fail_and_replay(stack, creation.id)
    before = stack.get(creation.id).to_dict()
    assert stack.run("upload", creation.id, 1).code == ExitCode.STALE
    assert stack.get(creation.id).to_dict() == before
    assert stack.storage.head(f"media/{stack.uid}/{creation.id}/original.png") is None


class ReplayedMidway:
    """The real generator; while it works, the attempt is failed, refunded and replayed (as a
    reconciler and an operator would), so the step's read is stale by the time it writes."""

    def __init__(self, stack, creation_id: str):
        self.stack, self.creation_id = stack, creation_id

    def generate_image(self, prompt, options):
        media = self.stack.services.generator.generate_image(prompt, options)

        def fail(c):
            c.transition(Status.FAILED)
            return c
        self.stack.store.update_creation(self.creation_id, fail)
        self.stack.store.refund(self.creation_id, 1)
        self.stack.replay(self.creation_id)
        return media


def test_generate_drops_its_output_when_a_replay_started_meanwhile(stack):
    creation = stack.create("a moving target")
    stack.through(creation.id, "mark_processing")
    racing = StepServices(stack.settings, store=stack.store, storage=stack.storage,
                          generator=ReplayedMidway(stack, creation.id))
    result = stack.run("generate", creation.id, services=racing)
    assert result.code == ExitCode.STALE
    current = stack.get(creation.id)
    assert (current.attempt, current.status) == (2, Status.PENDING)
    assert current.checkpoint("generate") is None
    assert current.error is None
