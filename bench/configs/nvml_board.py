"""Which NVML board a CUDA device is: device detection reads its details there and the energy meter its
counter, so the lookup sits with detection, below both."""
from __future__ import annotations


def pci_bus_id(props) -> str | None:
    """NVML's form of a CUDA device's PCI address ('00000000:19:00.0') from torch's device properties."""
    try:
        return f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
    except (AttributeError, TypeError, ValueError):
        return None


def nvml_handle(nvml, torch_index: int):
    """The NVML handle of the board behind CUDA device `torch_index`: by UUID, else PCI bus id. Never by
    ordinal: with CUDA_VISIBLE_DEVICES, CUDA's device 0 is not NVML's device 0. Returns (handle, how)."""
    import torch

    props = torch.cuda.get_device_properties(torch_index)
    uuid = getattr(props, "uuid", None)
    errors = []
    if uuid is not None:
        text = str(uuid)
        text = text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"
        try:
            return nvml.nvmlDeviceGetHandleByUUID(text), f"uuid {text}"
        except Exception as exc:  # noqa: BLE001 - NVMLError_NotFound and the like
            errors.append(f"uuid {text}: {exc}")
    bus = pci_bus_id(props)
    if bus is not None:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(bus), f"pci {bus}"
        except Exception as exc:  # noqa: BLE001
            errors.append(f"pci {bus}: {exc}")
    raise LookupError("no NVML board matches this CUDA device (" + "; ".join(errors or ["no uuid or pci id"]) + ")")
