"""One ACME order, start to finish, with the ``acme`` library (RFC 8555).

:meth:`AcmeIssuer.issue` blocks (the library speaks HTTP synchronously); the
certificate service runs it in a thread.  Steps, each reported through
``progress`` so the app's log stream shows them:

1. the account: one RSA key per dynod under ``<state_dir>/acme``, registered
   on first use (an existing registration for the key is reused);
2. the order for the app's names, with a fresh P-256 key and CSR;
3. for each authorization, the HTTP-01 key authorization is published for the
   router (:class:`~dynod.certs.challenges.ChallengeTokens`) and the challenge
   answered; tokens are withdrawn when the order ends, however it ends;
4. the order is finalized and the full chain downloaded.

Any failure becomes :class:`AcmeFailed` with the CA's own words.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from acme import challenges, client, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwk import JWKRSA

from dynod.certs.challenges import ChallengeTokens
from dynod.certs.pem import csr_pem, key_pem, new_key
from dynod.errors import AcmeFailed

Progress = Callable[[str, str], None]
# How long one order may take, validation and finalization included.
ORDER_TIMEOUT = 90.0


class AcmeIssuer:
    def __init__(
        self,
        directory_url: str,
        account_dir: Path,
        tokens: ChallengeTokens,
        ca_file: Path | None = None,
        timeout: float = ORDER_TIMEOUT,
    ) -> None:
        self.directory_url = directory_url
        self.account_dir = account_dir
        self.tokens = tokens
        self.ca_file = ca_file
        self.timeout = timeout

    def issue(self, names: list[str], progress: Progress) -> tuple[str, str]:
        """A certificate for ``names`` as (full chain PEM, key PEM)."""
        try:
            return self._issue(names, progress)
        except (errors.Error, messages.Error, OSError, ValueError) as exc:
            raise AcmeFailed(
                f"The ACME server at {self.directory_url} did not issue a "
                f"certificate for {', '.join(names)}: {exc}"
            ) from exc

    def _issue(self, names: list[str], progress: Progress) -> tuple[str, str]:
        # The account: registered once per key, reused after that.
        acme = self._client()
        progress("account", f"Using ACME account at {self.directory_url}")

        # The order, with a key of its own.
        key = new_key()
        order = acme.new_order(csr_pem(key, names))
        progress("pending", f"Order placed for {', '.join(names)}")

        # HTTP-01: publish every key authorization, then ask for validation.
        published: list[str] = []
        try:
            answers = []
            for authz in order.authorizations:
                # An authorization the CA still holds as valid needs no answer.
                if authz.body.status == messages.STATUS_VALID:
                    continue
                chall = _http01(authz)
                response, validation = chall.response_and_validation(acme.net.key)
                token = chall.chall.encode("token")
                self.tokens.publish(token, validation)
                published.append(token)
                answers.append((chall, response))
            for chall, response in answers:
                acme.answer_challenge(chall, response)
            progress("verifying", "HTTP-01 challenges published and answered")
            deadline = dt.datetime.now() + dt.timedelta(seconds=self.timeout)
            done = acme.poll_and_finalize(order, deadline)
        finally:
            for token in published:
                self.tokens.withdraw(token)
        progress("issued", f"Certificate issued for {', '.join(names)}")
        return done.fullchain_pem, key_pem(key)

    def _client(self) -> client.ClientV2:
        account_key = JWKRSA(key=self._account_key())
        verify: bool | str = str(self.ca_file) if self.ca_file else True
        net = client.ClientNetwork(
            account_key,
            user_agent="dynod",
            verify_ssl=verify,  # type: ignore[arg-type]
        )
        directory = client.ClientV2.get_directory(self.directory_url, net)
        acme = client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as exc:
            # The key is registered already: sign as that account.
            net.account = messages.RegistrationResource(
                uri=exc.location, body=messages.Registration()
            )
        return acme

    def _account_key(self) -> rsa.RSAPrivateKey:
        path = self.account_dir / "account-key.pem"
        try:
            loaded = serialization.load_pem_private_key(path.read_bytes(), None)
            if isinstance(loaded, rsa.RSAPrivateKey):
                return loaded
        except FileNotFoundError:
            pass
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.account_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.account_dir, 0o700)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return key


def _http01(authz: messages.AuthorizationResource) -> messages.ChallengeBody:
    for chall in authz.body.challenges:
        if isinstance(chall.chall, challenges.HTTP01):
            return chall
    raise AcmeFailed(
        f"The ACME server offers no HTTP-01 challenge for "
        f"{authz.body.identifier.value}; dynod answers HTTP-01 only."
    )
