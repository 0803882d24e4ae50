"""Which columns a table shows: the header's context menu lists them, each with a check box; the
first (what a row is) always stays. Hidden columns are part of the header's state, which the
main window saves and restores with the widths."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QTableView


def choosable_columns(table: QTableView) -> dict[int, QAction]:
    """Give ``table``'s header a menu of its columns (right click); returns each column's
    action by its index (the first column has none)."""
    header = table.horizontalHeader()
    model = table.model()
    menu = QMenu(header)
    actions = {}
    for c in range(1, model.columnCount()):
        a = QAction(str(model.headerData(c, Qt.Horizontal)), menu, checkable=True)
        a.setChecked(not header.isSectionHidden(c))
        a.toggled.connect(lambda on, c=c: header.setSectionHidden(c, not on))
        menu.addAction(a)
        actions[c] = a
    menu.aboutToShow.connect(lambda: [a.setChecked(not header.isSectionHidden(c)) for c, a in actions.items()])
    header.setContextMenuPolicy(Qt.CustomContextMenu)
    header.customContextMenuRequested.connect(lambda pos: menu.popup(header.mapToGlobal(pos)))
    header.setToolTip("right click: the columns to show")
    return actions
