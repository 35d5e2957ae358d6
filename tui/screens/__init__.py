"""The app's screens by the name the app and the command palette use to open them."""

from tui.screens.chat import ChatScreen
from tui.screens.config_form import ConfigScreen
from tui.screens.dataset import DatasetScreen
from tui.screens.export import ExportScreen
from tui.screens.home import HomeScreen
from tui.screens.presets import PresetsScreen
from tui.screens.queue import QueueScreen
from tui.screens.runs import RunsScreen
from tui.screens.sweep import SweepScreen

SCREENS = {
    "home": HomeScreen,
    "presets": PresetsScreen,
    "config": ConfigScreen,
    "dataset": DatasetScreen,
    "export": ExportScreen,
    "chat": ChatScreen,
    "runs": RunsScreen,
    "sweep": SweepScreen,
    "queue": QueueScreen,
}
FRESH = {"export", "chat"}
"""Screens that show a chosen run: reopened new so they pick up the app's current run."""
