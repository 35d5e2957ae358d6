"""Every shipped preset loads and validates; broken preset files say what is wrong and where."""

from pathlib import Path

import pytest

from engine.config.presets import list_presets, load_preset, load_preset_file, save_preset
from engine.config.schema import ConfigError
from engine.files.paths import presets_dir
from engine.hardware import catalog

FIXTURES = Path(__file__).parent / "fixtures"
PRESET_FILES = sorted(p for p in presets_dir().glob("*.toml") if p.name != "models.toml")
REQUIRED = {"demo", "quick-test", "balanced", "quality", "low-vram", "full"}


def test_the_required_presets_exist():
    assert REQUIRED <= {p.stem for p in PRESET_FILES}


@pytest.mark.parametrize("path", PRESET_FILES, ids=lambda p: p.stem)
def test_preset_loads_validates_and_explains_itself(path):
    preset = load_preset_file(path)
    config = preset.apply()
    spec = catalog.find(config.model)
    assert [p for p in config.check(spec.context if spec else None) if p.level == "error"] == []
    assert preset.description
    # Each key carries a comment that says what it does.
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("description", "#")):
            assert "#" in line, f"{path.name}: uncommented key: {line}"


def test_demo_preset_trains_the_embedded_model_on_the_shipped_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ftui is started from anywhere, not only from the checkout
    config = load_preset("demo").apply()
    assert catalog.get(config.model).source == "embedded"
    assert Path(config.dataset).is_file() and config.dataset.endswith("presets/data/docker_train.jsonl")


@pytest.mark.parametrize(
    ("fixture", "fragment"),
    [
        ("bad_unknown_key.toml", "did you mean 'learning_rate'"),
        ("bad_type.toml", "batch_size: expected a whole number"),
        ("bad_method.toml", "method: 'prefix-tuning' is not one of"),
        ("bad_toml.toml", "is not valid TOML"),
    ],
)
def test_broken_preset_files_name_the_problem(fixture, fragment):
    with pytest.raises(ConfigError) as exc:
        load_preset_file(FIXTURES / fixture)
    assert fragment in str(exc.value)


def test_good_fixture_beside_the_bad_ones_loads():
    assert load_preset_file(FIXTURES / "good_minimal.toml").apply().learning_rate == 1e-4


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError) as exc:
        load_preset("fast")
    assert "balanced" in str(exc.value)


def test_saved_preset_loads_back_identically(tmp_path):
    config = load_preset("balanced").apply().replace(lora_r=32, name="mine")
    path = save_preset(config, "mine", 'my "tuned" balanced', folder=tmp_path)
    assert [p.name for p in list_presets(tmp_path)] == ["mine"]
    again = load_preset_file(path)
    assert again.apply() == config and "tuned" in again.description
    assert not list(tmp_path.glob(".*partial"))


def test_a_users_own_presets_folder_adds_to_ftuis_presets_and_the_cpu_plan_still_works(tmp_path, monkeypatch):
    """FTUI_PRESETS pointing at a folder without demo.toml made the CPU plan (and so the home screen
    and `ftui recommend`) fail with "no preset 'demo'"."""
    from engine.hardware.recommend import recommend

    mine = tmp_path / "presets"
    mine.mkdir()
    monkeypatch.setenv("FTUI_PRESETS", str(mine))
    save_preset(load_preset("balanced").apply().replace(learning_rate=5e-5), "mine", "my own")
    save_preset(load_preset("quality").apply().replace(name="q2"), "quality", "my quality")
    assert (mine / "mine.toml").exists()

    listed = {p.name: p for p in list_presets()}
    assert {"mine", "demo", "balanced"} <= set(listed)
    assert listed["quality"].path.parent == mine, "the user's preset of a shipped name wins"
    assert load_preset("quality").apply().name == "q2" and load_preset("demo").path.parent != mine
    assert recommend([]).model == "smollm2-135m"
