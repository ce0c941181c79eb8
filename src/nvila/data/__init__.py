"""Training data: LLaVA-style conversation records, their tokenization, padding and sequence packing."""

from nvila.data.collate import TrainBatch, collate_packed, collate_padded, pack_greedy
from nvila.data.dataset import ConversationDataset, DatasetStats
from nvila.data.records import Record, read_records

__all__ = [
    "ConversationDataset",
    "DatasetStats",
    "Record",
    "TrainBatch",
    "collate_packed",
    "collate_padded",
    "pack_greedy",
    "read_records",
]
