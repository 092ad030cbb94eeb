//! Reading and writing guest memory from host functions, and handing data to the guest through its
//! allocator. Every access is bounds-checked: a bad pointer is a status, never a host panic.

use super::abi::Status;
use super::state::VmState;
use wasmtime::Caller;

pub use crate::wasm::sandbox::AbiViolation;

/// Copies `len` bytes at `ptr` out of guest memory.
pub fn read(caller: &mut Caller<'_, VmState>, ptr: u32, len: u32) -> Result<Vec<u8>, Status> {
    let memory = caller.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let data = memory.data(&caller);
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    data.get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

/// Writes `bytes` at `ptr`.
pub fn write(caller: &mut Caller<'_, VmState>, ptr: u32, bytes: &[u8]) -> Result<(), Status> {
    let memory = caller.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let data = memory.data_mut(caller);
    let start = ptr as usize;
    let end = start
        .checked_add(bytes.len())
        .ok_or(Status::InvalidMemoryAccess)?;
    data.get_mut(start..end)
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian u32.
pub fn write_u32(caller: &mut Caller<'_, VmState>, ptr: u32, v: u32) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Writes a little-endian u64.
pub fn write_u64(caller: &mut Caller<'_, VmState>, ptr: u32, v: u64) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Checks that `[ptr, ptr+len)` is inside guest memory.
pub fn check(caller: &mut Caller<'_, VmState>, ptr: u32, len: usize) -> Result<(), Status> {
    let memory = caller.data().memory.ok_or(Status::InvalidMemoryAccess)?;
    let size = memory.data_size(&caller);
    match (ptr as usize).checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Status::InvalidMemoryAccess),
    }
}

/// Gives `bytes` to the guest: allocates with its allocator, copies, and writes the pointer and size to
/// `ptr_ptr` and `size_ptr`. Empty data is a null pointer and size 0, as in the reference host.
/// `Ok(Err(status))` is a status for the guest; `Err` traps it.
pub fn copy_out(
    caller: &mut Caller<'_, VmState>,
    bytes: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> wasmtime::Result<Result<(), Status>> {
    if let Err(s) = check(caller, ptr_ptr, 4).and_then(|_| check(caller, size_ptr, 4)) {
        return Ok(Err(s));
    }
    let Ok(len) = u32::try_from(bytes.len()) else {
        return Ok(Err(Status::InternalFailure));
    };
    let mut ptr = 0;
    if len > 0 {
        let Some(malloc) = caller.data().malloc.clone() else {
            return Ok(Err(Status::InternalFailure));
        };
        ptr = malloc.call(&mut *caller, len)?;
        if ptr == 0 || check(caller, ptr, bytes.len()).is_err() {
            return Err(wasmtime::Error::new(AbiViolation(format!(
                "the guest allocator returned {ptr:#x} for {len} bytes, outside its memory"
            ))));
        }
        if let Err(s) = write(caller, ptr, bytes) {
            return Ok(Err(s));
        }
    }
    Ok(write_u32(caller, ptr_ptr, ptr).and_then(|_| write_u32(caller, size_ptr, len)))
}
