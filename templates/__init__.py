"""Viva's templates, static files and translations, shipped as the package `viva_templates`.

This folder stays at the top of the repository; pyproject.toml maps it to that package so a
wheel carries it and `scheduler.resources` finds it through importlib.resources. This file
makes it a regular package: setuptools' editable install cannot serve a namespace package's
files to importlib.resources.
"""
