from pathlib import Path

import pytest

from tests.families.tiny import FAMILIES, build


@pytest.fixture(scope="session")
def family_folders(tmp_path_factory) -> dict[str, Path]:
    """Each family's tiny model, built once a session (a few seconds each)."""
    root = tmp_path_factory.mktemp("families")
    return {family: build(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    from engine.models.embedded import ensure_embedded_model

    return ensure_embedded_model()
