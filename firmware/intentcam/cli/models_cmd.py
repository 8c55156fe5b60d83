"""``intentcam models fetch|list``: install and verify the models in the manifest."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path

from intentcam.cli.common import add_config_option, settings_from
from intentcam.errors import ModelError, UserError
from intentcam.models import Fetcher, installed_models, load_manifest
from intentcam.models.store import MIRROR_ENV, mirror_from_env

NAME = "models"
log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        NAME,
        help="fetch and verify models",
        description="Manage the models listed in the model manifest.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    fetch = actions.add_parser(
        "fetch",
        help="download and verify models into the model dir",
        description="Fetch every model the daemon uses (or the ones named, e.g. movenet_lightning) "
        "into paths.model_dir, from a "
        f"mirror folder (--mirror or {MIRROR_ENV}) or the model's public sources, "
        "verifying sha256. A mismatch installs nothing and names both hashes.",
    )
    fetch.add_argument("ids", nargs="*", metavar="MODEL_ID", help="only these models")
    fetch.add_argument("--mirror", type=Path, metavar="DIR", help="folder holding model files")
    add_config_option(fetch)
    fetch.add_argument("--json", action="store_true", help="print one JSON object")
    fetch.set_defaults(handler=fetch_models)

    listing = actions.add_parser(
        "list",
        help="show installed models and whether they verify",
        description="List manifest models with their install state.",
    )
    add_config_option(listing)
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(handler=list_models)


def fetch_models(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    manifest = load_manifest(settings.paths.manifest)
    mirror = mirror_from_env(args.mirror)
    if mirror is not None and not mirror.is_dir():
        raise UserError(f"--mirror {mirror}: not a folder", exit_code=2)
    specs = [manifest.get(model_id) for model_id in args.ids] if args.ids else manifest.in_use()
    fetcher = Fetcher(manifest, settings.paths.models, mirror=mirror)
    results: dict[str, str] = {}
    errors: dict[str, str] = {}
    for spec in specs:
        try:
            results[spec.id] = fetcher.fetch(spec)
        except ModelError as exc:
            errors[spec.id] = str(exc)
            log.error("%s", exc)
    if args.json:
        print(
            json.dumps(
                {"model_dir": str(settings.paths.models), "results": results, "errors": errors}
            )
        )
    else:
        for model_id, state in results.items():
            print(f"{model_id:32} {state}")
        for model_id, error in errors.items():
            print(f"{model_id:32} FAILED: {error}")
        print(f"model dir: {settings.paths.models}")
    if errors:
        raise UserError(f"{len(errors)} of {len(specs)} model(s) could not be fetched")
    return 0


def list_models(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    manifest = load_manifest(settings.paths.manifest)
    statuses = installed_models(manifest, settings.paths.models)
    if args.json:
        print(
            json.dumps(
                {
                    "model_dir": str(settings.paths.models),
                    "models": [asdict(status) for status in statuses],
                }
            )
        )
    else:
        print(f"{'id':28} {'role':16} {'state':9} {'size':>9}  file")
        for status in statuses:
            size = f"{status.size:,}" if status.size else "-"
            print(f"{status.id:28} {status.role:16} {status.state:9} {size:>9}  {status.file}")
        print(f"model dir: {settings.paths.models}")
    return 0 if all(status.state == "verified" for status in statuses) else 1
