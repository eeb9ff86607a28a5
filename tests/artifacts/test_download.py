"""The download step against a local fake hub: retries, permanent failures, one download per lock, offline verify."""

from __future__ import annotations

import errno
import sys
import threading
from pathlib import Path

import pytest

from infersweep.artifacts import download as dl
from infersweep.artifacts.locks import FileModelLock, LockKey, PgAdvisoryLock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from fakehub import FakeHub, FakeRepo

REPO = "acme/tiny-model"
FILES = {
    "config.json": b'{"model_type": "llama", "hidden_size": 64}',
    "model-00001-of-00002.safetensors": bytes(range(256)) * 64,
    "model-00002-of-00002.safetensors": b"\x01" * 3000,
    "tokenizer/tokenizer.json": b'{"version": "1.0"}',
}


@pytest.fixture
def hub(monkeypatch):
    """The fake hub on a free port; the hub client is put online but can reach only this endpoint."""
    import huggingface_hub.constants as hf_constants

    fake = FakeHub().start()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    # Both, so that even a call without `endpoint=` can only reach the fake hub.
    monkeypatch.setattr(hf_constants, "ENDPOINT", fake.endpoint)
    monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        fake.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    fake.add(FakeRepo(REPO, dict(FILES)))
    yield fake
    fake.stop()


class EstaleInjector:
    """Raise ESTALE from huggingface_hub's WeakFileLock on one blob's lock, `n` times (the seed's failure).

    Every attempt needs that blob until it succeeds, so attempts 1..n fail and n+1 succeeds.
    """

    def __init__(self, monkeypatch, n: int, blob_oid: str) -> None:
        import huggingface_hub.file_download as fd

        self.remaining = n
        self.raised = 0
        self._lock = threading.Lock()
        real = fd.WeakFileLock

        def weak_file_lock(path, *args, **kwargs):
            with self._lock:
                fire = self.remaining > 0 and blob_oid in str(path)
                if fire:
                    self.remaining -= 1
                    self.raised += 1
            if fire:
                raise OSError(errno.ESTALE, "Stale file handle", str(path))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(fd, "WeakFileLock", weak_file_lock)


class CountingLock:
    """Wraps a ModelLock and records how many holders are inside at once."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.inside = 0
        self.max_inside = 0
        self._g = threading.Lock()

    def hold(self, key, timeout_s):
        import contextlib

        @contextlib.contextmanager
        def cm():
            with self.inner.hold(key, timeout_s):
                with self._g:
                    self.inside += 1
                    self.max_inside = max(self.max_inside, self.inside)
                try:
                    yield
                finally:
                    with self._g:
                        self.inside -= 1

        return cm()


def _download(hub, cache: Path, **kw):
    kw.setdefault("backoff_base_s", 0.0)
    return dl.download_model(REPO, cache_dir=cache, endpoint=hub.endpoint, cache_domain="test", **kw)


def test_estale_twice_then_success_with_one_download_in_flight(hub, tmp_path, monkeypatch):
    injector = EstaleInjector(monkeypatch, n=2, blob_oid=hub.repos[REPO].oid("config.json"))
    lock = CountingLock(FileModelLock(tmp_path / "locks"))
    results: list[dl.DownloadResult] = []
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            results.append(_download(hub, tmp_path / "hub", lock=lock, max_workers=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert injector.raised == 2
    assert lock.max_inside == 1  # never two downloads of one model at once
    downloaders = [r for r in results if r.downloaded]
    assert len(downloaders) == 1 and downloaders[0].attempts == 3
    assert [e.split(":")[1].strip() for e in downloaders[0].errors] == ["stale_file_handle"] * 2
    assert sorted(r.attempts for r in results if not r.downloaded) == [0, 0, 0]  # siblings found it complete
    assert all(n == 1 for n in hub.gets.values()) and len(hub.gets) == len(FILES)  # each byte fetched once
    assert hub.max_in_flight == 1
    assert {r.commit for r in results} == {hub.repos[REPO].commit}
    snapshot = Path(downloaders[0].path)
    for name, data in FILES.items():
        assert (snapshot / name).read_bytes() == data


def test_403_fails_at_once(hub, tmp_path):
    hub.repos[REPO].token = "hf_right"
    sleeps: list[float] = []
    with pytest.raises(dl.DownloadError) as info:
        _download(hub, tmp_path / "hub", token="hf_wrong", sleep=sleeps.append)
    assert info.value.attempts == 1 and info.value.transient is False and info.value.kind == "gated_repo"
    assert sleeps == [] and hub.api_calls["info"] == 1 and not hub.gets
    assert "hf_wrong" not in str(info.value)


def test_right_token_is_sent(hub, tmp_path):
    hub.repos[REPO].token = "hf_right"
    result = _download(hub, tmp_path / "hub", token="hf_right")
    assert result.downloaded and result.files == len(FILES)


@pytest.mark.parametrize("repo, revision, kind", [("acme/nope", None, "hub_not_found"),
                                                  (REPO, "no-such-branch", "hub_not_found")])
def test_missing_repo_or_revision_is_permanent(hub, tmp_path, repo, revision, kind):
    with pytest.raises(dl.DownloadError) as info:
        dl.download_model(repo, revision=revision, cache_dir=tmp_path / "hub", endpoint=hub.endpoint,
                          backoff_base_s=0.0, sleep=lambda s: None)
    assert info.value.kind == kind and info.value.attempts == 1


def test_5xx_and_429_are_retried_with_exponential_backoff(hub, tmp_path):
    # On the repo-info call: the hub client itself retries 5xx/429 on tree listings and file GETs.
    hub.fail_next("info", 503)
    hub.fail_next("info", 429)
    sleeps: list[float] = []
    result = _download(hub, tmp_path / "hub", backoff_base_s=2.0, backoff_max_s=60.0, sleep=sleeps.append)
    assert result.downloaded and result.attempts == 3
    assert len(sleeps) == 2 and 1.6 <= sleeps[0] <= 2.4 and 3.2 <= sleeps[1] <= 4.8  # 2 s, 4 s ± 20 % jitter


def test_unknown_failures_are_retried_once(hub, tmp_path, monkeypatch):
    calls: list[int] = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("something nobody has seen before")

    monkeypatch.setattr(dl, "_download_once", broken)
    with pytest.raises(dl.DownloadError) as info:
        _download(hub, tmp_path / "hub", sleep=lambda s: None)
    assert info.value.kind == "unknown" and len(calls) == 2 and info.value.attempts == 2


def test_transient_failures_give_up_after_max_attempts(hub, tmp_path):
    hub.fail_next("info", 500, count=10)
    with pytest.raises(dl.DownloadError) as info:
        _download(hub, tmp_path / "hub", max_attempts=3, sleep=lambda s: None)
    assert info.value.attempts == 3 and info.value.transient and info.value.kind == "hub_unavailable"


def test_verify_offline_catches_truncated_and_missing_blobs(hub, tmp_path):
    cache = tmp_path / "hub"
    result = _download(hub, cache)
    ok = dl.verify_offline(REPO, cache_dir=cache)
    assert ok.path == result.path and ok.total_bytes == sum(len(v) for v in FILES.values())
    blob = (Path(result.path) / "model-00002-of-00002.safetensors").resolve()
    blob.write_bytes(b"\x01" * 10)  # truncated by a crashed copy
    with pytest.raises(dl.IncompleteDownloadError) as info:
        dl.verify_offline(REPO, cache_dir=cache)
    assert info.value.wrong_size == ["model-00002-of-00002.safetensors (10 != 3000)"]
    (Path(result.path) / "config.json").unlink()
    with pytest.raises(dl.IncompleteDownloadError):
        dl.verify_offline(REPO, cache_dir=cache)
    # The next download run repairs it: blobs still present are re-linked, only the bad one is fetched again.
    before = sum(hub.gets.values())
    blob.unlink()
    again = _download(hub, cache)
    assert again.downloaded and sum(hub.gets.values()) - before == 1
    assert (Path(again.path) / "config.json").read_bytes() == FILES["config.json"]
    dl.verify_offline(REPO, cache_dir=cache)


def test_verify_offline_without_manifest_says_so(tmp_path):
    with pytest.raises(dl.IncompleteDownloadError, match="no download manifest"):
        dl.verify_offline(REPO, hf_home=tmp_path)


def test_local_path_skips_download(tmp_path):
    model_dir = tmp_path / "weights"
    model_dir.mkdir()
    result = dl.download_model(str(model_dir), cache_dir=tmp_path / "hub")
    assert result.local and result.path == str(model_dir) and not result.downloaded
    with pytest.raises(dl.DownloadError, match="does not exist"):
        dl.download_model(str(tmp_path / "absent"))


def test_offline_mode_in_download_step_is_permanent(tmp_path):
    # conftest sets HF_HUB_OFFLINE=1: the download step must say so once, not retry five times.
    with pytest.raises(dl.DownloadError) as info:
        dl.download_model(REPO, cache_dir=tmp_path / "hub", endpoint="http://127.0.0.1:9", sleep=lambda s: None)
    assert info.value.kind == "hub_offline" and info.value.attempts == 1


def test_file_lock_excludes_other_holders(tmp_path):
    lock = FileModelLock(tmp_path, poll_s=0.01)
    key = LockKey("d", REPO, "main")
    with lock.hold(key, timeout_s=5):
        with pytest.raises(TimeoutError, match="not acquired"):
            with FileModelLock(tmp_path, poll_s=0.01).hold(key, timeout_s=0.05):
                pass
        with FileModelLock(tmp_path).hold(LockKey("other-domain", REPO, "main"), timeout_s=0.05):
            pass  # a different cache domain is a different lock
    with lock.hold(key, timeout_s=0.05):
        pass


@pytest.mark.integration
def test_pg_advisory_lock_excludes_other_sessions(pg_url, hub, tmp_path):
    key = LockKey("d", REPO, "main")
    lock = PgAdvisoryLock(pg_url)
    with lock.hold(key, timeout_s=5):
        with pytest.raises(TimeoutError, match="another node"):
            with PgAdvisoryLock(pg_url).hold(key, timeout_s=0.2):
                pass
    with lock.hold(key, timeout_s=1):
        pass
    counting = CountingLock(PgAdvisoryLock(pg_url))
    results: list[dl.DownloadResult] = []
    threads = [threading.Thread(target=lambda: results.append(_download(hub, tmp_path / "hub", lock=counting)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert counting.max_inside == 1 and sum(r.downloaded for r in results) == 1 and len(results) == 3
    assert all(n == 1 for n in hub.gets.values())


def test_classification_table():
    import httpx2
    from huggingface_hub import errors as hf_errors

    def http_error(status: int) -> Exception:
        resp = httpx2.Response(status, request=httpx2.Request("GET", "http://x"))
        return hf_errors.HfHubHTTPError(f"{status}", response=resp)

    inner = OSError(errno.ESTALE, "Stale file handle")
    wrapped = RuntimeError("download failed")
    wrapped.__cause__ = inner
    cases = {
        "estale": (wrapped, "stale_file_handle", True),
        "500": (http_error(500), "hub_unavailable", True),
        "429": (http_error(429), "hub_unavailable", True),
        "401": (http_error(401), "gated_repo", False),
        "403": (http_error(403), "gated_repo", False),
        "404": (http_error(404), "hub_not_found", False),
        "reset": (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "hub_unavailable", True),
        "timeout": (httpx2.ReadTimeout("read timed out"), "hub_unavailable", True),
        # No exact signal: the shared faults corpus decides from the text.
        "text": (RuntimeError("[Errno 116] Stale file handle: '/mnt/hf/.locks/x.lock'"), "stale_file_handle", True),
        "gated-text": (RuntimeError("Cannot access gated repo for url https://huggingface.co/x"), "gated_repo", False),
    }
    for name, (exc, kind, transient) in cases.items():
        fc = dl.classify_download_error(exc)
        assert (fc.kind, fc.transient) == (kind, transient), name


def test_recipe_models_include_the_drafter_and_use_the_node_cache(hub, tmp_path):
    from infersweep.config.inventory import Node
    from infersweep.recipes.model import Recipe

    hub.add(FakeRepo("acme/drafter", {"config.json": b"{}", "model.safetensors": b"\x02" * 100}))
    node = Node.model_validate({"name": "n1", "runner": "h200", "hf-home": str(tmp_path / "hf"),
                                "cache-domain": "vast"})
    recipe = Recipe(image="i", argv=("vllm", "serve", REPO), model=REPO, draft_model="acme/drafter")
    results = dl.download_recipe_models(recipe, node=node, endpoint=hub.endpoint, backoff_base_s=0.0)
    assert [r.repo_id for r in results] == [REPO, "acme/drafter"] and all(r.downloaded for r in results)
    assert all(r.path.startswith(str(tmp_path / "hf" / "hub")) for r in results)
    dl.verify_offline("acme/drafter", hf_home=tmp_path / "hf")


def test_a_complete_cache_is_not_refetched_unless_refresh(hub, tmp_path):
    cache = tmp_path / "hub"
    first = _download(hub, cache)
    calls = hub.api_calls["info"]
    again = _download(hub, cache)
    assert (again.downloaded, again.attempts, hub.api_calls["info"]) == (False, 0, calls)
    # The branch moves on the hub: only refresh=True notices, and fetches the new commit.
    repo = hub.repos[REPO]
    repo.commit = "f" * 40
    repo.files["config.json"] = b'{"model_type": "llama", "hidden_size": 128}'
    assert _download(hub, cache).commit == first.commit
    moved = _download(hub, cache, refresh=True)
    assert moved.downloaded and moved.commit == "f" * 40
    assert (Path(moved.path) / "config.json").read_bytes() == repo.files["config.json"]
    assert dl.verify_offline(REPO, cache_dir=cache).commit == "f" * 40


def test_interrupted_transfer_resumes_from_the_partial_file(hub, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    # The client writes in DOWNLOAD_CHUNK_SIZE (10 MiB) pieces; small ones let a 16 KiB file be partial.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    name = "model-00001-of-00002.safetensors"
    hub.cut_after[name] = 5000  # of 16384 bytes, then the connection drops
    result = _download(hub, tmp_path / "hub", sleep=lambda s: None)
    assert (Path(result.path) / name).read_bytes() == FILES[name]
    # The bytes already on disk were not fetched again: the retry asked for the rest with a Range header.
    [(resumed, start)] = hub.range_starts
    assert resumed == name and 0 < start <= 5000, hub.range_starts
    dl.verify_offline(REPO, cache_dir=tmp_path / "hub")


def test_an_incomplete_download_is_retried(hub, tmp_path, monkeypatch):
    """Regression (issue 15, bug 2): `IncompleteDownloadError` declares itself transient, but the classifier
    read another attribute and took it for permanent, so the download gave up after one try."""
    real = dl.verify_offline
    calls: list[int] = []

    def flaky_verify(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 2:  # the pre-check, then the check after attempt 1
            raise dl.IncompleteDownloadError("config.json: 10 of 20 bytes", wrong_size=["config.json"])
        return real(*args, **kwargs)

    monkeypatch.setattr(dl, "verify_offline", flaky_verify)
    result = _download(hub, tmp_path / "hub", sleep=lambda s: None)
    assert result.downloaded and result.attempts == 2
    assert [e.split(":")[1].strip() for e in result.errors] == ["incomplete_download"]
