from .deployment import Deployment, aet_validator
from .modality import Modality
from .orthanc_user import OrthancUser
from .revision import ConfigRevision

__all__ = ["ConfigRevision", "Deployment", "Modality", "OrthancUser", "aet_validator"]
