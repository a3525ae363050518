"""``hwnas agent serve``: the device agent for phones and boards with Python."""

from __future__ import annotations

import argparse
import os

from hwnas.cli._args import at_least, port, positive_float
from profilers import agent


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``agent serve`` to the CLI."""
    parser = commands.add_parser("agent", help="device agent: serve measurements and outputs over HTTP",
                                 description=agent.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="agent_command", metavar="SUBCOMMAND", required=True)
    serve = sub.add_parser("serve", help="run the agent's HTTP server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=port, default=8765, help="port (default 8765)")
    serve.add_argument("--token", default=os.environ.get("HWNAS_AGENT_TOKEN"),
                       help="required for non-loopback addresses (default: $HWNAS_AGENT_TOKEN)")
    serve.add_argument("--max-mb", type=at_least(1), default=64, help="largest request in MiB (default 64)")
    serve.add_argument("--max-seconds", type=positive_float, default=600.0,
                       help="longest measurement one request may take, checked after every run (default 600 s)")
    serve.add_argument("--max-connections", type=at_least(1), default=agent.DEFAULT_MAX_CONNECTIONS,
                       help=f"connections served at once; more get 503 (default {agent.DEFAULT_MAX_CONNECTIONS})")
    serve.add_argument("--max-waiting", type=at_least(0), default=agent.DEFAULT_MAX_WAITING,
                       help=f"measurements queued behind the running one; more get 503 (default "
                            f"{agent.DEFAULT_MAX_WAITING})")
    serve.add_argument("--device-name", default=None, help="name reported for this device (default: host name)")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    agent.serve(args.host, args.port, args.token, max_bytes=args.max_mb * 1024 * 1024,
                max_seconds=args.max_seconds, device_name=args.device_name, max_connections=args.max_connections,
                max_waiting=args.max_waiting)
    return 0
