"""Builds: safe source extraction, the Procfile, buildpacks in a build dyno,
and the content-addressed slug store.

Modules: :mod:`~dynod.build.archive` (tarballs in and out),
:mod:`~dynod.build.slugignore`, :mod:`~dynod.build.procfile`,
:mod:`~dynod.build.release_yaml` (``bin/release`` output),
:mod:`~dynod.build.output` (reading what a build produces),
:mod:`~dynod.build.slugs` (the store) and :mod:`~dynod.build.builder`.
The driver run inside the build dyno is ``compile.sh`` beside them.
"""
