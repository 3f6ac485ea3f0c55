"""The Orthanc REST client: the only module that speaks HTTP to Orthanc."""

import requests
from django.conf import settings


class OrthancError(Exception):
    """Orthanc did not answer as asked. ``str()`` is a sentence for the staff."""


class OrthancUnreachable(OrthancError):
    pass


class OrthancAuthFailed(OrthancError):
    def __init__(self, message, status):
        super().__init__(message)
        self.status = status  # 401: credentials refused; 403: the request filter said no


class OrthancHTTPError(OrthancError):
    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class OrthancClient:
    def __init__(self, url, username="", password="", timeout=None):
        self.url = url.rstrip("/")
        self.auth = (username, password) if username else None
        self.timeout = timeout or settings.ORTHANC_HTTP_TIMEOUT
        self.session = requests.Session()

    @classmethod
    def for_deployment(cls, deployment, timeout=None):
        return cls(deployment.orthanc_url, deployment.service_username, deployment.service_password, timeout)

    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, f"{self.url}/{path.lstrip('/')}", auth=self.auth, **kwargs)
        except requests.Timeout as exc:
            raise OrthancUnreachable(f"Orthanc at {self.url} did not answer within {kwargs['timeout']} s") from exc
        except requests.RequestException as exc:
            raise OrthancUnreachable(f"Orthanc at {self.url} is unreachable ({type(exc).__name__})") from exc
        if response.status_code == 401:
            raise OrthancAuthFailed(f"Orthanc at {self.url} refused the portal's credentials (401)", 401)
        if response.status_code == 403:
            raise OrthancAuthFailed(f"Orthanc at {self.url} forbids this request to the portal's account (403)", 403)
        if response.status_code >= 400:
            detail = ""
            try:
                body = response.json()
                detail = body.get("Details") or body.get("Message") or ""
            except ValueError:
                pass
            raise OrthancHTTPError(
                f"Orthanc answered {response.status_code} to {method} {path}" + (f": {detail}" if detail else ""),
                response.status_code,
            )
        return response

    def get_json(self, path, **kwargs):
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path, payload=None, **kwargs):
        response = self.request("POST", path, json=payload if payload is not None else {}, **kwargs)
        return response.json() if response.content else None

    def system(self):
        return self.get_json("/system")

    def statistics(self):
        return self.get_json("/statistics")

    def upload(self, dicom_bytes):
        return self.request(
            "POST", "/instances", data=dicom_bytes, headers={"Content-Type": "application/dicom"}
        ).json()
