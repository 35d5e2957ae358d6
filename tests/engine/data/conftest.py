from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded SmolLM2-135M tokenizer with its real chat template."""
    from engine.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("smollm2-135m"))


@pytest.fixture
def fixture_path():
    return lambda name: str(FIXTURES / name)
