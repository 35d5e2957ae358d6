"""The CLI tests drive the engine's packages through `cli.main`, on those packages' own fixtures."""

from tests.engine.data.conftest import fixture_path, tokenizer  # noqa: F401
from tests.engine.export.conftest import embedded_dir, tokenizer_dir  # noqa: F401
from tests.engine.hardware.conftest import card, fake_nvml  # noqa: F401
from tests.engine.models.conftest import hf_cache  # noqa: F401
