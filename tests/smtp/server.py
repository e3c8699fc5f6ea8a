"""A real SMTP server for the workers' tests (aiosmtpd), with scripted refusals.

    python server.py MAILDIR

Prints `listening PORT` once it accepts connections, then stores every message it accepts as a
file in MAILDIR. Recipients steer it, so one server serves every case of a test:
- `rifiuto-permanente@…`: 550 at RCPT, every time (a permanent refusal);
- `rifiuto-temporaneo-N@…`: 451 at RCPT for the first N tries, then accepted;
- `lento@…`: accepted after 3 seconds (a slow relay); `lento-N@…` after N seconds.
"""

import asyncio
import os
import re
import socket
import sys
import time
from collections import Counter

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, maildir):
        self.maildir = maildir
        self.tries = Counter()
        self.stored = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        self.tries[address] += 1
        if local == "rifiuto-permanente":
            return "550 5.1.1 Mailbox unavailable"
        temporary = re.fullmatch(r"rifiuto-temporaneo-(\d+)", local)
        if temporary and self.tries[address] <= int(temporary.group(1)):
            return "451 4.3.0 Try again later"
        slow = re.fullmatch(r"lento(?:-(\d+))?", local)
        if slow:
            await asyncio.sleep(int(slow.group(1) or 3))
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.stored += 1
        name = f"{time.time_ns()}-{self.stored}.eml"
        tmp = os.path.join(self.maildir, "." + name)
        with open(tmp, "wb") as out:
            out.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.maildir, name))
        return "250 Message accepted"


def main():
    maildir = sys.argv[1]
    os.makedirs(maildir, exist_ok=True)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    controller = Controller(Handler(maildir), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"listening {port}", flush=True)
    try:
        sys.stdin.read()  # runs until the test closes our stdin (or dies)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
