"""``radclip conditions``: list, register, retire and audit the screening conditions."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = "manage the screening conditions in the prompt registry (list, register, retire, history, seed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", default=None, help="SQLAlchemy URL (default RADCLIP_DATABASE_URL or sqlite under RADCLIP_HOME)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list conditions (active only unless --all)")
    ls.add_argument("--all", action="store_true", help="include retired conditions")
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    reg = sub.add_parser("register", help="register a condition or a new version of one")
    reg.add_argument("name", help="slug, e.g. rib_fracture")
    reg.add_argument("--prompt", action="append", required=True, help="a prompt (repeat 1-32 times)")
    reg.add_argument("--synonym", action="append", default=[], help="a synonym (repeatable)")
    reg.add_argument("--category", default="other", help="parenchymal, pleural, cardiomediastinal, airway, osseous, devices_lines, ...")
    reg.add_argument("--by", default="cli", help="who registers it (audit trail)")
    ret = sub.add_parser("retire", help="retire a condition (kept in history, left out of screening)")
    ret.add_argument("name")
    hist = sub.add_parser("history", help="every version of a condition")
    hist.add_argument("name")
    hist.add_argument("--json", action="store_true")
    sub.add_parser("seed", help="register the shipped seed conditions (idempotent)")
    cal = sub.add_parser("calibrate", help="fit per-condition calibrations on a labelled manifest split (NIH findings)")
    cal.add_argument("--manifest", default=None, help="manifest CSV (default: the shared cxr/manifest.csv)")
    cal.add_argument("--images-root", default=None, help="folder the manifest's paths are relative to (default: the CSV's folder)")
    cal.add_argument("--split", default="val", help="split to fit on (default val; never test)")
    cal.add_argument("--ship", action="store_true",
                     help="fit the seed conditions' calibrations on val and the label-free reference on train, and write "
                          "both beside the image-text model's weights (<model>.calibration.json, <model>.reference.safetensors)")
    cal.add_argument("--model", default=None, help="image-text model name or .safetensors path (default RADCLIP_CLIP_MODEL)")


def _embedder() -> Any:
    from radclip.engine.encoders import default_text_embedder
    from radclip.engine.text_cache import CacheConfig, TextEmbeddingCache
    from radclip.settings import get_settings

    return TextEmbeddingCache(default_text_embedder(), CacheConfig(redis_url=get_settings().redis_url))


def run(args: argparse.Namespace) -> int:
    from radclip.engine.registry import PromptRegistry, RegistryError

    if args.action == "calibrate":
        return _ship(args) if args.ship else _calibrate(args)
    needs_model = args.action in ("register", "seed")
    try:
        registry = PromptRegistry(args.database, _embedder() if needs_model else None)
        if args.action == "list":
            _seed_if_empty(registry)
            items = [c.to_dict() for c in registry.list(active_only=not args.all)]
            if args.json:
                print(json.dumps(items, indent=1))
            else:
                for c in items:
                    print(f"{c['name']:<32} v{c['version']:<3} {c['status']:<8} {c['category']:<18} {len(c['prompts'])} prompts")
        elif args.action == "register":
            r = registry.register(args.name, args.prompt, args.synonym, args.category, args.by)
            print(json.dumps(r.__dict__))
        elif args.action == "retire":
            print(json.dumps(registry.retire(args.name).to_dict()))
        elif args.action == "history":
            hist = registry.history(args.name)
            if args.json:
                print(json.dumps(hist, indent=1))
            else:
                for h in hist:
                    print(f"v{h['version']} {h['status']:<10} {h['registered_at']} by {h['registered_by']}: {len(h['prompts'])} prompts")
        elif args.action == "seed":
            print(json.dumps(registry.load_seed()))
    except (RegistryError, RuntimeError) as exc:
        print(f"radclip conditions: {exc}", file=sys.stderr)
        return 1
    return 0


def _seed_if_empty(registry: Any) -> None:
    """A fresh registry gets the shipped seed conditions, exactly as ``radclip serve`` does on its first start.

    Without this, ``conditions list`` on a new RADCLIP_HOME printed nothing until the service had run once.
    """
    from radclip.settings import get_settings

    if not get_settings().seed_conditions or registry.list(active_only=False):
        return
    registry.embedder = _embedder()  # seeding embeds the prompts: the text model is needed only now
    counts = registry.load_seed()
    print(f"radclip conditions: the registry was empty; registered the {counts['registered']} shipped seed conditions, "
          "as `radclip serve` does on first start (set RADCLIP_SEED_CONDITIONS=false to keep it empty)", file=sys.stderr)  # fmt: skip


def _calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.fit_conditions import fit_from_manifest
    from radclip.engine.registry import PromptRegistry, RegistryError
    from radclip.engine.screening import Screener
    from radclip.settings import get_settings

    manifest = Path(args.manifest) if args.manifest else get_settings().cxr_root / "manifest.csv"
    root = Path(args.images_root) if args.images_root else manifest.parent
    try:
        text, image = _embedder(), default_image_embedder()
        registry = PromptRegistry(args.database, text)
        screener = Screener(registry, image_version=image.version, text_version=text.version)
        fits = fit_from_manifest(screener, image, manifest, root, args.split, size=getattr(image, "input_size", 224))
    except (RegistryError, RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"radclip conditions calibrate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({n: {"scale": round(c.scale, 4), "bias": round(c.bias, 4), "n_pos": c.n_pos, "n_neg": c.n_neg} for n, c in fits.items()}, indent=1))
    return 0


def _ship(args: argparse.Namespace) -> int:
    """Fit on the shared manifest (reference: train, calibrations: val) and write both files beside the weights."""
    import tempfile
    from pathlib import Path

    from radclip.engine.calibration import CALIBRATION_SUFFIX, MIN_PATIENTS, save_shipped_calibrations
    from radclip.engine.encoders import default_image_embedder
    from radclip.engine.fit_conditions import fit_on_embeddings, patient_counts
    from radclip.engine.reference import embed_split, fit_reference, reference_path, save_reference
    from radclip.engine.registry import PromptRegistry, RegistryError
    from radclip.engine.screening import Screener
    from radclip.io.manifest import data_snapshot
    from radclip.models.registry import find_card
    from radclip.settings import get_settings

    if args.split != "val":
        print("radclip conditions calibrate --ship: shipped calibrations are fitted on val only; drop --split", file=sys.stderr)
        return 2
    model = args.model or get_settings().clip_model
    manifest = Path(args.manifest) if args.manifest else get_settings().cxr_root / "manifest.csv"
    root = Path(args.images_root) if args.images_root else manifest.parent
    try:
        card, card_file = find_card(model)
        text, image = _embedder(), default_image_embedder(model)
        snapshot = data_snapshot(manifest)
        with tempfile.TemporaryDirectory() as tmp:  # the seed conditions, as a fresh service registers them
            registry = PromptRegistry(f"sqlite:///{Path(tmp) / 'ship.db'}", text)
            registry.load_seed()
            screener = Screener(registry, image_version=image.version, text_version=text.version)
            val_embs, val_frame = embed_split(image, manifest, root, "val")
            fits = fit_on_embeddings(screener, val_embs, val_frame, persist=False)
            m = screener.matrix()
            embs = {n: m.matrix[m.names.index(n)] for n in fits}
            registry.engine.dispose()
        meta = {"model": card.name, "model_sha256": card.weights_sha256, "text_version": text.version,
                "image_version": image.version, "data_snapshot": snapshot, "split": "val",
                "rule": f"logistic on cosine; >= {MIN_PATIENTS} positive and >= {MIN_PATIENTS} negative patients; "
                        "a negative slope is replaced by the val prevalence",
                "command": "radclip conditions calibrate --ship"}  # fmt: skip
        details = patient_counts(val_frame, list(fits))
        cal_file = save_shipped_calibrations(card_file.parent / f"{card.name}{CALIBRATION_SUFFIX}", fits, embs, meta, details)
        train_embs, train_frame = embed_split(image, manifest, root, "train")
        ref = fit_reference(train_embs, train_frame, card.weights_sha256, snapshot)
        ref_file = save_reference(reference_path(card_file, card.name), ref)
    except (RegistryError, RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"radclip conditions calibrate --ship: {exc}", file=sys.stderr)
        return 1
    summary = {n: {"scale": round(c.scale, 3), "bias": round(c.bias, 3), "n_pos": c.n_pos, "n_neg": c.n_neg} for n, c in fits.items()}
    print(json.dumps({"calibrations": str(cal_file), "reference": str(ref_file), "reference_n": ref.distribution.n,
                      "fits": summary}, indent=1))  # fmt: skip
    return 0
