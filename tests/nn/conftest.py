import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # The states here are tiny: intra-op threads only add synchronisation.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
