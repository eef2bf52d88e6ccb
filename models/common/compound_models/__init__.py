"""Shared code of compound's model Trusses.

Bundled into every model Truss through `external_package_dirs: [../common]`, so the
Truss folders stay thin (config.yaml + model/model.py) and nothing is copied by hand.
"""
