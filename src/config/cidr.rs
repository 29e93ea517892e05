//! Address ranges: the client addresses a stored key allows, the proxies trusted to say
//! whom they forward.

use serde::Serialize;
use std::net::IpAddr;

/// An address range, IPv4 or IPv6: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return None;
        }
        // An IPv4 range written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`): the IPv4 range,
        // as the addresses it is matched against are read.
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), bits >= 96) {
                return Some(Cidr {
                    addr: IpAddr::V4(v4),
                    bits: bits - 96,
                });
            }
        }
        Some(Cidr { addr, bits })
    }

    /// Whether `a` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, a: IpAddr) -> bool {
        // `::/0` and `0.0.0.0/0`: every address.
        if self.bits == 0 {
            return true;
        }
        let a = match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        let (net, a, width) = match (self.addr, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n) as u128, u32::from(a) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        if self.bits == 0 {
            return true;
        }
        let shift = width - u32::from(self.bits);
        (net >> shift) == (a >> shift)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
