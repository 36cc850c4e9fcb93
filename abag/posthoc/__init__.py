"""What is fitted after the network has trained: the familiar-antigen correction, the antigen construct term,
and the calibrated intervals with their applicability class.

May import: abag.evaluation, abag.model and the rooms below them.
"""

from abag.posthoc.antigen_context import AntigenContext, antigen_descriptors
from abag.posthoc.familiar_correction import FamiliarCorrection
from abag.posthoc.intervals import (
                                    CALIBRATED_COVERAGES,
                                    IntervalCalibration,
                                    IntervalScale,
                                    PredictionSupport,
                                    applicability,
                                    interval_coverage,
                                    interval_report,
)

__all__ = ["FamiliarCorrection", "AntigenContext", "antigen_descriptors", "IntervalCalibration", "IntervalScale",
           "PredictionSupport", "applicability", "interval_report", "interval_coverage", "CALIBRATED_COVERAGES"]
