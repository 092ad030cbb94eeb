//! WASI preview 1 for core modules, as far as plugins need it: standard output and error go to the
//! log, clocks, randomness, empty arguments and environment, `proc_exit`, `sched_yield`. Every other
//! preview 1 function exists (so a module built by any SDK instantiates) and answers `ENOSYS`; there is
//! no filesystem (`fd_prestat_get` says `EBADF`, so libc finds no preopened directories) and no sockets.

use rand::RngCore;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, FuncType, Linker, Memory, Val, ValType};

/// The preview 1 module name.
pub const MODULE: &str = "wasi_snapshot_preview1";

const ESUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;

/// What the WASI shim needs from a store's data.
pub trait WasiHost: Send + 'static {
    /// The guest's exported memory, once known.
    fn memory(&self) -> Option<Memory>;
    /// Bytes written to fd 1 (stdout) or 2 (stderr).
    fn output(&mut self, fd: u32, bytes: &[u8]);
}

/// `proc_exit` was called: the guest is finished. Traps the call.
#[derive(Debug, thiserror::Error)]
#[error("the guest called proc_exit({0})")]
pub struct ProcExit(pub i32);

fn mem_write<T: WasiHost>(c: &mut Caller<'_, T>, ptr: u32, bytes: &[u8]) -> Result<(), i32> {
    let memory = c.data().memory().ok_or(EFAULT)?;
    let start = ptr as usize;
    let end = start.checked_add(bytes.len()).ok_or(EFAULT)?;
    memory
        .data_mut(c)
        .get_mut(start..end)
        .ok_or(EFAULT)?
        .copy_from_slice(bytes);
    Ok(())
}

fn mem_read<T: WasiHost>(c: &mut Caller<'_, T>, ptr: u32, len: u32) -> Result<Vec<u8>, i32> {
    let memory = c.data().memory().ok_or(EFAULT)?;
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(EFAULT)?;
    memory
        .data(&c)
        .get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(EFAULT)
}

fn errno(r: Result<(), i32>) -> i32 {
    r.err().unwrap_or(ESUCCESS)
}

fn now_nanos(clock: u32) -> Result<u64, i32> {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    match clock {
        0 => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64),
        // Monotonic, and (having no better) process and thread CPU time.
        1..=3 => Ok(START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1),
        _ => Err(EINVAL),
    }
}

/// Signatures of the preview 1 functions this shim answers with `ENOSYS` (i = i32, I = i64).
const UNSUPPORTED: &[(&str, &str)] = &[
    ("fd_advise", "iIIi"),
    ("fd_allocate", "iII"),
    ("fd_datasync", "i"),
    ("fd_fdstat_set_flags", "ii"),
    ("fd_fdstat_set_rights", "iII"),
    ("fd_filestat_get", "ii"),
    ("fd_filestat_set_size", "iI"),
    ("fd_filestat_set_times", "iIIi"),
    ("fd_pread", "iiiIi"),
    ("fd_prestat_dir_name", "iii"),
    ("fd_pwrite", "iiiIi"),
    ("fd_read", "iiii"),
    ("fd_readdir", "iiiIi"),
    ("fd_renumber", "ii"),
    ("fd_seek", "iIii"),
    ("fd_sync", "i"),
    ("fd_tell", "ii"),
    ("path_create_directory", "iii"),
    ("path_filestat_get", "iiiii"),
    ("path_filestat_set_times", "iiiiIIi"),
    ("path_link", "iiiiiii"),
    ("path_open", "iiiiiIIii"),
    ("path_readlink", "iiiiii"),
    ("path_remove_directory", "iii"),
    ("path_rename", "iiiiii"),
    ("path_symlink", "iiiii"),
    ("path_unlink_file", "iii"),
    ("poll_oneoff", "iiii"),
    ("proc_raise", "i"),
    ("sock_accept", "iii"),
    ("sock_recv", "iiiiii"),
    ("sock_send", "iiiii"),
    ("sock_shutdown", "ii"),
];

/// Defines all of WASI preview 1 on `linker`.
pub fn add_to_linker<T: WasiHost>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Caller<'_, T>, fd: i32, iovs: u32, n: u32, ret: u32| -> i32 {
            if fd != 1 && fd != 2 {
                return EBADF;
            }
            let mut total: u32 = 0;
            for i in 0..n {
                let Some(at) = i.checked_mul(8).and_then(|o| iovs.checked_add(o)) else {
                    return EFAULT;
                };
                let iov = match mem_read(&mut c, at, 8) {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let bytes = match mem_read(&mut c, ptr, len) {
                    Ok(v) => v,
                    Err(e) => return e,
                };
                c.data_mut().output(fd as u32, &bytes);
                total = total.saturating_add(len);
            }
            errno(mem_write(&mut c, ret, &total.to_le_bytes()))
        },
    )?;
    for (name, count_only) in [("args_sizes_get", true), ("environ_sizes_get", true)] {
        let _ = count_only;
        linker.func_wrap(
            MODULE,
            name,
            |mut c: Caller<'_, T>, count: u32, size: u32| -> i32 {
                errno(
                    mem_write(&mut c, count, &0u32.to_le_bytes())
                        .and_then(|_| mem_write(&mut c, size, &0u32.to_le_bytes())),
                )
            },
        )?;
    }
    for name in ["args_get", "environ_get"] {
        linker.func_wrap(MODULE, name, |_c: Caller<'_, T>, _a: u32, _b: u32| -> i32 {
            ESUCCESS
        })?;
    }
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Caller<'_, T>, id: u32, _precision: u64, ret: u32| -> i32 {
            match now_nanos(id) {
                Ok(t) => errno(mem_write(&mut c, ret, &t.to_le_bytes())),
                Err(e) => e,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut c: Caller<'_, T>, id: u32, ret: u32| -> i32 {
            match now_nanos(id) {
                Ok(_) => errno(mem_write(&mut c, ret, &1u64.to_le_bytes())),
                Err(e) => e,
            }
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut c: Caller<'_, T>, ptr: u32, len: u32| -> i32 {
            let mut buf = vec![0u8; len as usize];
            rand::rng().fill_bytes(&mut buf);
            errno(mem_write(&mut c, ptr, &buf))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |_c: Caller<'_, T>, code: i32| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(ProcExit(code)))
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", |_c: Caller<'_, T>| -> i32 {
        ESUCCESS
    })?;
    linker.func_wrap(MODULE, "fd_close", |_c: Caller<'_, T>, _fd: i32| -> i32 {
        EBADF
    })?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_get",
        |_c: Caller<'_, T>, _fd: i32, _ret: u32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut c: Caller<'_, T>, fd: i32, ret: u32| -> i32 {
            if !(0..=2).contains(&fd) {
                return EBADF;
            }
            // fdstat: filetype u8 (2 = character device), flags u16, rights base u64, rights inheriting u64.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            let rights: u64 = if fd == 0 { 2 } else { 64 }; // fd_read / fd_write
            stat[8..16].copy_from_slice(&rights.to_le_bytes());
            errno(mem_write(&mut c, ret, &stat))
        },
    )?;
    let engine = linker.engine().clone();
    for (name, sig) in UNSUPPORTED {
        let params: Vec<ValType> = sig
            .chars()
            .map(|ch| {
                if ch == 'I' {
                    ValType::I64
                } else {
                    ValType::I32
                }
            })
            .collect();
        let ty = FuncType::new(&engine, params, [ValType::I32]);
        linker.func_new(MODULE, name, ty, |_c, _params, results| {
            results[0] = Val::I32(ENOSYS);
            Ok(())
        })?;
    }
    Ok(())
}
