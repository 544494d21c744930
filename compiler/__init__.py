"""netdef's compiler: parsing, upgrade, the IR, the per-layer rules and the passes.

Installed as `netdef.compiler` (see pyproject.toml's package-dir mapping).
"""
