"""The run's settings: the typed schema and its checks, building a config from presets, files, --set or a recommendation, the preset files, and other tools' key names."""
