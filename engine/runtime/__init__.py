"""The trading runtime: one trader per system (feed -> decide -> risk -> adapter -> fills)."""
