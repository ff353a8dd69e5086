"""prefaudit: audit preference datasets before DPO.

Each stage works alone from a notebook::

    from prefaudit import load, audit
    table, report = load("sample_data/pandalm_testset_v1.json")
    result = audit(table, load_report=report)
    result.metrics            # {"hygiene.empty_response_share": ..., ...}
"""

__version__ = "0.1.0"

from prefaudit.env import stay_offline  # noqa: E402

stay_offline()

from prefaudit.audit import AuditResult, audit, read_audit  # noqa: E402
from prefaudit.errors import PrefauditError  # noqa: E402
from prefaudit.loaders import LoadReport, load  # noqa: E402
from prefaudit.results import AnalyzerResult, Metric  # noqa: E402

__all__ = ["AnalyzerResult", "AuditResult", "LoadReport", "Metric", "PrefauditError", "__version__",
           "audit", "load", "read_audit"]
