"""Cloud Build v1 (`cloudbuild.googleapis.com`): builds that carry out a Dockerfile without Docker.

Owns the Build resource and its operations in their wire shape (`backend`: builds, `docker
build` steps, the registry of built images), the REST routes (`api`), the image builder
(`imagebuild`: Dockerfile instructions into an image folder) and its Python environments
(`pyenv`: offline `pip install` into cached venvs). Serves Cloud Run as the `ImageRegistry`
interface of `opslib.localcloud.cloud`.

Uses, through `opslib.localcloud.cloud`: `objects` (the source tarball in Cloud Storage) and
`logs` (the build log). May import `opslib.core` and the shared modules of `opslib.localcloud`.
"""
