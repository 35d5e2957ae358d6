from pathlib import Path

import pytest

from tests.engine.train.tiny import make_model_folder


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def wide_model_folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("tiny-llama-64"), hidden=64)
