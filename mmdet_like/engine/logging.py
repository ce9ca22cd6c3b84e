"""The ``mmdet_like`` logger: console on every rank (errors only on ranks > 0), file on 0."""

import logging
import sys

from mmdet_like.engine.dist import get_dist_info

_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def get_logger(name="mmdet_like", log_file=None, log_level="INFO"):
    """The named logger, set up once: a console handler, and ``log_file`` on rank 0.

    Ranks other than 0 only print errors, so a multi-process run prints one log.
    """
    logger = logging.getLogger(name)
    rank, _ = get_dist_info()
    level = logging.getLevelName(log_level) if isinstance(log_level, str) else log_level
    if not any(getattr(h, "_mmdet_like", False) for h in logger.handlers):
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(logging.Formatter(_FORMAT))
        console._mmdet_like = True
        logger.addHandler(console)
        logger.propagate = False
    if log_file is not None and rank == 0:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
                handler.close()
        file_handler = logging.FileHandler(log_file, "w")
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        file_handler._mmdet_like = True
        logger.addHandler(file_handler)
    logger.setLevel(level if rank == 0 else logging.ERROR)
    return logger
