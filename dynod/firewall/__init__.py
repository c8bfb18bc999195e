"""The host firewall: dynod's own iptables chains, applied atomically."""

from dynod.firewall.iptables import Firewall, Runner
from dynod.firewall.rules import FirewallPlan, WebPort, render

__all__ = ["Firewall", "FirewallPlan", "Runner", "WebPort", "render"]
