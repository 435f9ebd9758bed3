"""``python -m marquee.serve bundle=BUNDLE port=N [host=127.0.0.1] [log_dir=DIR] [histories=PATH.parquet] ...``

Serve a bundle over HTTP (FastAPI + uvicorn; no torch, no Lightning):

  bundle=BUNDLE        the bundle folder ``python -m marquee.export`` wrote (checked before serving)
  port=N               the TCP port (0: any free one)
  host=H               the interface, 127.0.0.1 by default (0.0.0.0 to listen on every interface)
  log_dir=DIR          where impressions.jsonl and events.jsonl are appended (default: logs/serving)
  histories=PATH       optional Parquet of members' events (user_id, item_id, timestamp[, event, value, device]),
                       so that POST /recommend may send user_id alone
  threads=T            onnxruntime and FAISS threads (default 1)
  policy=FILE          the artwork policy (a marquee-artwork-policy JSON, from ``python -m marquee.bandit
                       save_policies=true``) instead of the bundle's own; without either, every title gets
                       `artworks` synthetic variants chosen uniformly
  artworks=A           synthetic artwork variants per title (default 4)
  seed=S               seed of the artwork choice (default: unseeded)
  variant_b=BUNDLE     A/B test: bundle= serves variant "A", this bundle variant "B"; members are bucketed by a
                       salted SHA-256 of user_id (else the request's member_key, else its history), the same
                       member always in the same variant; every response and impression names its variant
  policy_b=FILE        A/B test of artwork policies: variant B is the same bundle (or variant_b) with this policy;
                       both policies must share one artwork layout, and the readout (python -m marquee.compare
                       LOG_DIR) then also values each policy from the other's impressions
  split=F              the share of members in variant B, 0..1 (default 0.5; only with variant_b or policy_b)
  salt=S               the bucketing salt (default marquee-ab-v1; a new salt reshuffles members)

Endpoints: GET /health, POST /recommend, POST /events; the OpenAPI schema at /openapi.json, docs at /docs.
A bad bundle or argument ends with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import sys

KEYS = {"bundle": str, "port": int, "host": str, "log_dir": str, "histories": str, "threads": int, "artworks": int,
        "seed": int, "variant_b": str, "split": float, "salt": str, "policy": str, "policy_b": str}
REQUIRED = ("bundle", "port")


class ArgumentError(ValueError):
    """A bad ``key=value`` argument: the message names the key."""


def parse(argv: list[str]) -> dict[str, object]:
    """``key=value`` arguments, each key known and of its type, the required ones present."""
    settings: dict[str, object] = {}
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key not in KEYS:
            raise ArgumentError(f"unknown argument '{arg}'; give {', '.join(f'{k}=...' for k in KEYS)}")
        if KEYS[key] in (int, float):
            try:
                settings[key] = KEYS[key](value)
            except ValueError:
                kind = "an integer" if KEYS[key] is int else "a number"
                raise ArgumentError(f"{key}: expected {kind}, got {value!r}") from None
        else:
            settings[key] = value
    for key in REQUIRED:
        if key not in settings:
            raise ArgumentError(f"{key}: required, and not given (add {key}=...)")
    if ("split" in settings or "salt" in settings) and "variant_b" not in settings and "policy_b" not in settings:
        raise ArgumentError("split/salt: only with an A/B test (add variant_b=BUNDLE or policy_b=FILE)")
    if not 0.0 <= float(settings.get("split", 0.5)) <= 1.0:
        raise ArgumentError(f"split: the share of members in variant B must be within [0, 1], got {settings['split']}")
    return settings


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    import uvicorn

    from marquee.serving.app import create_app

    try:
        settings = parse(argv)
        app = create_app(settings["bundle"], settings.get("log_dir", "logs/serving"), settings.get("histories"),
                         threads=settings.get("threads", 1), artworks=settings.get("artworks", 4),
                         seed=settings.get("seed"), variant_b=settings.get("variant_b"),
                         split=float(settings.get("split", 0.5)), policy=settings.get("policy"),
                         policy_b=settings.get("policy_b"), **({"salt": settings["salt"]} if "salt" in settings else {}))
    except (ValueError, OSError) as error:  # ArgumentError, BundleError, HistoryError are ValueErrors
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    uvicorn.run(app, host=str(settings.get("host", "127.0.0.1")), port=int(settings["port"]), log_level="warning")


if __name__ == "__main__":
    main()
