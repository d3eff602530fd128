"""Log configuration: no personal data in the server's log, whoever writes the line.

The edge's own code never logs addresses, e-mails or viewer ids. Libraries do: aioice logs
every ICE connectivity check at INFO with both ends' addresses (viewers' and publishers'
IPs), aiortc logs transports with them, uvicorn's access log would hold every client's
address. So those loggers are held at WARNING whatever the root level (`hold_libraries`,
applied by the app factory, so the tests' servers run with it too), and the server's
handler also blanks anything shaped like an IP address in what is left (`RedactAddresses`),
for the library line nobody has read yet.
"""

from __future__ import annotations

import ipaddress
import logging
import re

# Loggers that carry peers' addresses in INFO/DEBUG lines.
LIBRARY_LEVELS = {"aioice": logging.WARNING, "aiortc": logging.WARNING, "uvicorn.access": logging.WARNING}
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CANDIDATE = re.compile(r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
                        r"(?:\d{1,3}(?:\.\d{1,3}){3})?)(?:%\w+)?(?![\w.:])")


def hold_libraries() -> None:
    for name, level in LIBRARY_LEVELS.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < level:
            logger.setLevel(level)


def redact(text: str) -> str:
    """`text` with every IPv4/IPv6 address replaced by `[address]`."""
    def blank(match: re.Match) -> str:
        try:
            ipaddress.ip_address(match.group(0).split("%")[0])
        except ValueError:
            return match.group(0)  # a time such as 12:30:05, or a ratio: not an address
        return "[address]"

    return _CANDIDATE.sub(blank, text)


class RedactAddresses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure(level: int = logging.INFO) -> None:
    """The server's logging: `wave-edge serve` calls it once."""
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactAddresses())
    hold_libraries()
