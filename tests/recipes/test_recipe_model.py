from infersweep.recipes.model import Mount, Recipe


def _recipe(port: int = 8888, **kw) -> Recipe:
    return Recipe(image="vllm/vllm-openai:v1", argv=("vllm", "serve", "m", "--port", str(port), "--tensor-parallel-size", "8"),
                  env={"HF_HUB_OFFLINE": "1", **kw.pop("env", {})}, gpus=8, port=port, model="m", **kw)


def test_fingerprint_ignores_where_the_server_listens_and_caches() -> None:
    a = _recipe()
    b = _recipe(9000, env={"HF_HUB_CACHE": "/mnt/x"}, mounts=(Mount(source="/nfs/hf", target="/mnt/x"),))
    assert a.fingerprint() == b.fingerprint()


def test_fingerprint_changes_with_anything_that_changes_results() -> None:
    a = _recipe()
    assert a.fingerprint() != a.model_copy(update={"image": "vllm/vllm-openai:v2"}).fingerprint()
    assert a.fingerprint() != a.model_copy(update={"argv": (*a.argv, "--enforce-eager")}).fingerprint()
    assert a.fingerprint() != a.model_copy(update={"env": {"HF_HUB_OFFLINE": "1", "VLLM_X": "1"}}).fingerprint()


def test_with_port_moves_argv_and_port_together() -> None:
    moved = _recipe().with_port(41234)
    assert moved.port == 41234
    assert moved.argv[3:5] == ("--port", "41234")
    assert moved.fingerprint() == _recipe().fingerprint()
