"""A moto server that enforces IAM (signatures and identity policies), and users made from policies.

moto checks IAM once ``INITIAL_NO_AUTH_ACTION_COUNT`` requests have been served: the first three
make an all-powerful ``admin`` user; everything after is signed and authorised. moto matches the
Action and Resource of identity policies; it ignores Condition blocks (so an SSE condition is not
enforced here) and does not apply conditions in bucket policies (a Deny with a condition denies all).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3

from pipeline.dev.servers import LocalS3

SETUP_REQUESTS = 3


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


class IamS3(LocalS3):
    def __init__(self) -> None:
        super().__init__(env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)})
        self.admin: Credentials | None = None

    def start(self) -> IamS3:
        super().start()
        iam = self._client("iam", Credentials(self.access_key, self.secret_key))
        iam.create_user(UserName="admin")
        everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(everything))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        self.admin = Credentials(key["AccessKeyId"], key["SecretAccessKey"])
        return self

    def _client(self, service: str, creds: Credentials):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
        )

    def client(self, creds: Credentials | None = None):
        return self._client("s3", creds or self.admin)

    def user(self, name: str, policy: dict) -> Credentials:
        iam = self._client("iam", self.admin)
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def env_for(self, creds: Credentials | None = None) -> dict[str, str]:
        creds = creds or self.admin
        return {
            "AWS_ACCESS_KEY_ID": creds.access_key,
            "AWS_SECRET_ACCESS_KEY": creds.secret_key,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
        }
