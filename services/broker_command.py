"""``rujukan broker setup``: the vhost, one broker user per service and agency, their permissions and the topology."""

from __future__ import annotations

import argparse

import aiohttp
from pydantic import AmqpDsn

from shared.broker import make_broker
from shared.broker_setup import Management, broker_users, declare_topology, set_up_broker
from shared.directory import load_directory
from shared.settings import Settings
from shared.topology import build_topology


async def set_up_broker_command(args: argparse.Namespace, settings: Settings) -> int:
    directory = load_directory(settings.config)
    topology = build_topology(directory, settings.retry_schedule)
    auth = {"Authorization": aiohttp.encode_basic_auth(args.admin_user, args.admin_password)}
    async with aiohttp.ClientSession(headers=auth, timeout=aiohttp.ClientTimeout(total=30)) as session:
        result = await set_up_broker(
            Management(session, args.management_url),
            broker_users(directory, topology),
            vhost=args.vhost,
            prefix=settings.broker_user_prefix,
            amqp_base_url=str(settings.amqp_url),
            secrets_file=args.secrets,
            rotate=args.rotate,
        )
    await declare_topology(
        topology,
        result.credentials,
        lambda url: make_broker(settings.model_copy(update={"amqp_url": AmqpDsn(url)}), app_id="rujukan-broker-setup"),
    )
    for change in result.changes:
        print(change)
    print(f"{len(result.credentials)} broker users ready; their AMQP URLs are in {args.secrets} (mode 0600)")
    return 0
