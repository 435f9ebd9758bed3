"""Logged interactions: loaders, vocabularies, filters, splits and datamodules."""

from marquee.data.errors import DataError
from marquee.data.events import EventSchema
from marquee.data.log import InteractionLog
from marquee.data.raw import RawLog
from marquee.data.vocab import Vocabulary

__all__ = ["DataError", "EventSchema", "InteractionLog", "RawLog", "Vocabulary"]
