"""Qt's item-data roles, looked up once. ``Qt.DisplayRole`` goes through PySide6's enum
lookup (~3 us each time) and a table's repaint asks data() for hundreds of cells."""

from PySide6.QtCore import Qt

DISPLAY = Qt.ItemDataRole.DisplayRole
FOREGROUND = Qt.ItemDataRole.ForegroundRole
BACKGROUND = Qt.ItemDataRole.BackgroundRole
ALIGNMENT = Qt.ItemDataRole.TextAlignmentRole
TOOLTIP = Qt.ItemDataRole.ToolTipRole
HORIZONTAL = Qt.Orientation.Horizontal
