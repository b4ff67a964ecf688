"""Write the center's hub configs (hub1.conf .. hub3.conf) and a site's leaf config
(leaf-example.conf) into this folder with zerocarbon.uplink.nats_config.

    python deploy/nats/generate.py --site plant-a --site plant-b

Each site gets a new password, printed once (give it to the site; its gateway reads it
from the variable its [uplink] password_env names); the hub configs keep bcrypt hashes
only. The workers' password is read from $ZC_CENTER_NATS_PASSWORD (a new one is made
and printed when it is unset). Without --site the configs hold one site, `example`,
whose password is thrown away: the shipped examples let no site in.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from zerocarbon.uplink.nats_config import (
    HubNode,
    SiteCredential,
    Tls,
    hash_password,
    hub_config,
    leaf_config,
    new_password,
)

HERE = Path(__file__).resolve().parent
# as the containers of docker-compose.center.yml see them
# a site reaches the hubs by their public names
PUBLIC_LEAF_URLS = [f"nats-leaf://hub{i}.center.example.net:7422" for i in (1, 2, 3)]
NODES = [
    HubNode(
        f"hub{i}",
        f"hub{i}",
        store_dir="/data/jetstream",
        leaf_advertise=f"hub{i}.center.example.net:7422",  # what a connected site is told
    )
    for i in (1, 2, 3)
]
TLS = Tls("/etc/nats/tls/server.pem", "/etc/nats/tls/server-key.pem")
HUB_STORE_BYTES = 50 * 1024**3
LEAF_STORE_BYTES = 2 * 1024**3  # the gateway's [uplink] max_backlog_mib = 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", action="append", default=[], help="a site id (repeat)")
    parser.add_argument("--out", type=Path, default=HERE, help="where the files go")
    args = parser.parse_args()
    worker_password = os.environ.get("ZC_CENTER_NATS_PASSWORD")
    if not worker_password:
        worker_password = new_password()
        print(f"workers' password (ZC_CENTER_NATS_PASSWORD): {worker_password}")
    sites = []
    for site in args.site or ["example"]:
        password = new_password()
        if args.site:
            print(f"site {site} password: {password}")
        sites.append(SiteCredential(site, hash_password(password)))
    worker_hash = hash_password(worker_password)
    for node in NODES:
        text = hub_config(
            node,
            NODES,
            worker_user="center",
            worker_password_hash=worker_hash,
            sites=sites,
            tls=TLS,
            max_store_bytes=HUB_STORE_BYTES,
        )
        (args.out / f"{node.name}.conf").write_text(text)
    leaf = leaf_config(
        "example",
        hub_leaf_urls=PUBLIC_LEAF_URLS,
        password="change-me",  # the gateway writes its own, with the site's password
        store_dir="/var/lib/zerocarbon/uplink/jetstream",
        max_store_bytes=LEAF_STORE_BYTES,
        tls_ca="/etc/zerocarbon/uplink-ca.pem",
    )
    (args.out / "leaf-example.conf").write_text(leaf)


if __name__ == "__main__":
    main()
