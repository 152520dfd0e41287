"""Dataset audit (``wardrobe data audit``): the run, its label-error search, report and clean manifest."""

from wardrobe.audit.clean import write_clean_manifest
from wardrobe.audit.run import AuditOptions, audit

__all__ = ["AuditOptions", "audit", "write_clean_manifest"]
