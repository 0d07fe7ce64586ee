"""SCRAM-SHA-256 client for tests/scramp.rs, using the independent `scramp` package.

Line protocol on stdin/stdout: prints client-first, reads server-first, prints client-final,
reads server-final (or FAIL), then prints VERIFIED when the server signature checks out or
REJECTED <reason> when it does not. Usage: scramp_client.py USERNAME PASSWORD
"""

import sys

from scramp import ScramClient, ScramException


def main():
    username, password = sys.argv[1], sys.argv[2]
    client = ScramClient(["SCRAM-SHA-256"], username, password)
    print(client.get_client_first(), flush=True)
    client.set_server_first(sys.stdin.readline().rstrip("\n"))
    print(client.get_client_final(), flush=True)
    server_final = sys.stdin.readline().rstrip("\n")
    if server_final == "FAIL":
        print("SERVER-FAILED", flush=True)
        return
    try:
        client.set_server_final(server_final)
    except ScramException as e:
        print(f"REJECTED {e}", flush=True)
        return
    print("VERIFIED", flush=True)


if __name__ == "__main__":
    main()
