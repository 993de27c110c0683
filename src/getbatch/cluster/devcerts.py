"""Throwaway TLS material for `getbatch cluster --tls`, the tests and the benchmarks: a CA made
on the spot (its key never leaves memory) and certificates it signs for loopback names. Not
for production: docs/deploy.md says how to run a real CA.

    ca = DevCA(directory)                 # writes ca.pem
    node = ca.issue("node")               # node.pem + node.key (0600), server and client use
"""
import datetime
import ipaddress
import os
from dataclasses import dataclass

LOOPBACK = ("127.0.0.1", "::1", "localhost")
VALID_DAYS = 30


class CertError(Exception):
    pass


def _x509():
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise CertError("generating certificates needs the cryptography package: "
                        "pip install cryptography") from None
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: str   # PEM file of the certificate
    key: str    # PEM file of its private key (mode 0600)


class DevCA:
    def __init__(self, directory, name="getbatch throwaway CA"):
        x509, hashes, serialization, ec, _, NameOID = _x509()
        self.directory = str(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(self._name).issuer_name(self._name)
                .public_key(self._key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()),
                               critical=False)
                .sign(self._key, hashes.SHA256()))
        self.cert = os.path.join(self.directory, "ca.pem")
        with open(self.cert, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name, hosts=LOOPBACK):
        """A certificate for `hosts` (IP addresses and DNS names), good for TLS servers and
        clients alike, written as `name`.pem and `name`.key in the CA's directory."""
        x509, hashes, serialization, ec, EKU, NameOID = _x509()
        key = ec.generate_private_key(ec.SECP256R1())
        sans = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(self._name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._key.public_key()), critical=False)
                .sign(self._key, hashes.SHA256()))
        issued = Issued(os.path.join(self.directory, f"{name}.pem"),
                        os.path.join(self.directory, f"{name}.key"))
        with open(issued.cert, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(issued.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return issued
