"""Links that leave the server (emails, checkout URLs): absolute, and signed where they give
access to a buyer's order."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..security import BadToken, Signer

ORDER_LINK = "order-link"
DOWNLOAD_LINK = "download"


class LinkExpired(Exception):
    """A signed link that was genuine but is too old."""


@dataclass(frozen=True)
class Links:
    public_url: str
    signer: Signer
    download_hours: int = 72

    @classmethod
    def for_config(cls, config: Config, secret_key: str) -> Links:
        return cls(config.public_url, Signer(secret_key), config.shop.download_link_hours)

    def download_url(self, order_id: str) -> str:
        """A link to the order's file, working for `download_hours` from now."""
        token = self.signer.sign_timed(order_id, DOWNLOAD_LINK)
        return f"{self.public_url}/download/{token}"

    def download_order_id(self, token: str) -> str:
        """The order a download link is for; BadToken if forged, LinkExpired if too old."""
        try:
            return self.signer.unsign_timed(token, DOWNLOAD_LINK, self.download_hours * 3600)
        except BadToken as exc:
            if exc.expired:
                raise LinkExpired(str(exc)) from None
            raise

    def order_token(self, order_id: str) -> str:
        """The token that opens a buyer's order page (it does not expire)."""
        return self.signer.sign(order_id, ORDER_LINK)

    def order_token_valid(self, order_id: str, token: str) -> bool:
        try:
            return self.signer.unsign(token, ORDER_LINK) == order_id
        except BadToken:
            return False

    def order_url(self, order_id: str, mode: str) -> str:
        """The buyer's order page: `/order/<id>?t=…`, under `/test` in test mode."""
        return f"{self._shop_url(mode)}/order/{order_id}?t={self.order_token(order_id)}"

    def portal_url(self, mode: str) -> str:
        """The buyer's portal, where an email address asks for a sign-in link."""
        return f"{self._shop_url(mode)}/portal"

    def _shop_url(self, mode: str) -> str:
        return f"{self.public_url}/test" if mode == "test" else self.public_url
