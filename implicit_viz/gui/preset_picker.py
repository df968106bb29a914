"""A combo box of the built-in presets (``assets/presets/*.toml``)."""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QComboBox, QWidget

from implicit_viz.core.presets import list_presets, preset_path


class PresetPicker(QComboBox):
    """Lists the presets by name, with their descriptions as tooltips.

    ``presetChosen(key)`` is emitted when the user picks a preset, not by :meth:`set_current`
    or :meth:`show_other`. Picking the preset already shown loads it again.
    """

    presetChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reload()
        self.activated.connect(self._on_activated)
        self.currentIndexChanged.connect(self._update_tooltip)

    def reload(self) -> None:
        """Read the preset list again (keeps the current preset when it still exists)."""
        current = self.current_key()
        with QSignalBlocker(self):
            self.clear()
            for info in list_presets():
                self.addItem(info.name, info.key)
                tip = info.description or info.name
                self.setItemData(self.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            index = self.findData(current) if current is not None else -1
            self.setCurrentIndex(max(index, 0) if self.count() else -1)
        self._update_tooltip()

    def keys(self) -> list[str]:
        """The preset keys, in display order."""
        return [self.itemData(i) for i in range(self.count())]

    def current_key(self) -> str | None:
        """The key of the preset shown, or None."""
        key = self.currentData()
        return key if isinstance(key, str) else None

    def set_current(self, key: str) -> None:
        """Show preset ``key`` without emitting ``presetChosen``; KeyError if unknown."""
        index = self.findData(key)
        if index < 0:
            raise KeyError(f"no preset '{key}'")
        self.setCurrentIndex(index)

    def show_other(self, label: str) -> None:
        """Show ``label`` (greyed, as the placeholder) instead of a preset name: the editor holds
        a text that is no preset's (an edited preset, a spec file). Emits nothing."""
        with QSignalBlocker(self):
            self.setPlaceholderText(label)
            self.setCurrentIndex(-1)
        self.setToolTip(label)

    @staticmethod
    def preset_text(key: str) -> str:
        """The TOML text of preset ``key``; KeyError if there is none."""
        path = preset_path(key)
        if path is None:
            raise KeyError(f"no preset '{key}'")
        return path.read_text(encoding="utf-8")

    def _on_activated(self, index: int) -> None:
        key = self.itemData(index)
        if isinstance(key, str):
            self.presetChosen.emit(key)

    def _update_tooltip(self, *_: object) -> None:
        index = self.currentIndex()
        tip = self.itemData(index, Qt.ItemDataRole.ToolTipRole) if index >= 0 else None
        self.setToolTip(tip or "")
