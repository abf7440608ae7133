"""``rxmrl convert rxlm SRC DST``: a reference checkpoint as an rxmrl model folder (torch imported in handlers).

    rxmrl convert rxlm ReactiveAI/RxT-Alpha-Supervised models/rxt-alpha-supervised    # hub id (gated) or folder
    rxmrl convert rxlm --decoder D --encoder E --memory-attention M --tokenizer T DST  # separate components
    rxmrl convert rxnn-decoder ReactiveAI/RxT-Alpha-Mini-Decoder models/mini-decoder --tokenizer T
"""

from __future__ import annotations

import argparse
from typing import NoReturn


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser("convert", help="convert a reference checkpoint (RxLM, RxNN) to an rxmrl folder")
    commands = convert.add_subparsers(dest="convert_command", metavar="FORMAT")
    convert.set_defaults(func=lambda args: (convert.print_help(), 2)[1])

    rxlm = commands.add_parser("rxlm", help="an RxLM RxTAlpha checkpoint (one folder or three components)")
    rxlm.add_argument("paths", nargs="+", metavar="SRC DST", help="SRC (folder or hub id) and DST, or only DST "
                      "with --decoder/--encoder/--memory-attention")
    rxlm.add_argument("--tokenizer", help="the reference tokenizer (tokenizer.json, its folder or a hub id); "
                      "default: the one in SRC")
    rxlm.add_argument("--decoder", help="an RxTDecoder folder or hub id")
    rxlm.add_argument("--encoder", help="an RxTEncoder folder or hub id")
    rxlm.add_argument("--memory-attention", help="an RxTSelfInterlayerMemoryAttention folder or hub id")
    _replace_option(rxlm)
    rxlm.set_defaults(func=_rxlm)

    rxnn = commands.add_parser("rxnn-decoder", help="an RxNN RxTAlphaDecoder checkpoint (decoder only)")
    rxnn.add_argument("source", help="folder or hub id")
    rxnn.add_argument("destination")
    rxnn.add_argument("--tokenizer", help="the reference tokenizer; default: the one in SOURCE")
    _replace_option(rxnn)
    rxnn.set_defaults(func=_rxnn)


def _replace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replace", action="store_true", help="replace a destination folder that holds other "
                        "files than a converted model's (they are deleted); without it such a folder is refused")


def _fail(message: str) -> NoReturn:
    """Refuse with the CLI's one error line (``rxmrl.cli.main`` prints an :class:`InputError`, exit 2)."""
    from rxmrl.convert import ConversionError

    raise ConversionError(message)


def _rxlm(args: argparse.Namespace) -> int:
    from rxmrl.convert import check_destination, load_rxlm, load_rxlm_components, save_converted

    components = (args.decoder, args.encoder, args.memory_attention)
    try:
        if any(components):
            if not all(components) or len(args.paths) != 1 or not args.tokenizer:
                return _fail("components need --decoder, --encoder, --memory-attention, --tokenizer and one DST")
            check_destination(args.paths[-1], args.replace)
            converted = load_rxlm_components(*components, tokenizer=args.tokenizer)
        elif len(args.paths) == 2:
            check_destination(args.paths[-1], args.replace)
            converted = load_rxlm(args.paths[0], args.tokenizer)
        else:
            return _fail("expected SRC DST (or DST with --decoder/--encoder/--memory-attention)")
        destination = save_converted(converted, args.paths[-1], args.replace)
    except FileNotFoundError as error:
        return _fail(str(error))
    return _report(converted, destination)


def _rxnn(args: argparse.Namespace) -> int:
    from rxmrl.convert import check_destination, save_converted
    from rxmrl.convert.rxnn import load_rxnn_decoder

    try:
        check_destination(args.destination, args.replace)
        converted = load_rxnn_decoder(args.source, args.tokenizer)
        destination = save_converted(converted, args.destination, args.replace)
    except FileNotFoundError as error:
        return _fail(str(error))
    return _report(converted, destination)


def _report(converted, destination) -> int:
    from rxmrl.model.params import count_parameters

    counts = count_parameters(converted.model)
    print(f"converted {converted.provenance['source']} -> {destination}")
    print("  " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in counts.items() if v))
    added = converted.provenance.get("added_tokens")
    print(f"  special tokens relabelled to rxmrl's ids{f'; added {added}' if added else ''}")
    reconstructed = converted.provenance.get("reconstructed")
    if reconstructed:  # a save made after share_components
        print("  re-tied from a tied save: " + ", ".join(f"{k} from {v}" for k, v in reconstructed.items()))
    return 0
