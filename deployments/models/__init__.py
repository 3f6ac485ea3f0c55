from .adoption import Adoption, PushLogin
from .deployment import Deployment, aet_validator
from .modality import Modality
from .orthanc_user import OrthancUser
from .revision import ConfigRevision
from .security_audit import SecurityAudit

__all__ = [
    "Adoption",
    "ConfigRevision",
    "Deployment",
    "Modality",
    "OrthancUser",
    "PushLogin",
    "SecurityAudit",
    "aet_validator",
]
