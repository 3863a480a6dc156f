"""Specs (`expc test`, DESIGN §11): YAML files that say what users must get, proved
against bundles compiled in memory from the current definitions.

    load (files -> typed specs) -> expand (matrix cases) -> resolve (names against one
    environment's bundle) -> run (evaluate, find `at` users, simulate) -> report / junit
"""
