"""quiet_libraries drops the known library chatter, and only inside its block."""

from __future__ import annotations

import logging
import warnings

from tsae_evals.quiet import quiet_libraries

FEWER_SAMPLES = "The training dataset contains fewer samples (173) than the number of samples required by your training"
OVERRIDE = "You just passed in a model which will override the one specified in your configuration: m."


def test_known_warnings_are_dropped_inside_the_block_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_libraries():
            warnings.warn(FEWER_SAMPLES, UserWarning, stacklevel=1)
            warnings.warn("something the user should see", UserWarning, stacklevel=1)
        warnings.warn(FEWER_SAMPLES, UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something the user should see", FEWER_SAMPLES]


def test_known_sae_lens_log_records_are_dropped_inside_the_block_only(caplog):
    logger = logging.getLogger("sae_lens")
    with caplog.at_level(logging.WARNING, logger="sae_lens"):
        with quiet_libraries():
            logger.warning(OVERRIDE)
            logger.warning("interrupted, saving progress")
        logger.warning(OVERRIDE)
    assert [record.getMessage() for record in caplog.records] == ["interrupted, saving progress", OVERRIDE]
