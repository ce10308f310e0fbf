# Runs in the image's root (chroot) after mmdebstrap, as /bin/sh -e. What a CI guest does not need
# is masked (so no package can start it), and nothing that must differ per VM is baked in.

# SSH host keys: made at each boot by cloud-init's ssh module (ssh_genkeytypes), never shipped.
rm -f /etc/ssh/ssh_host_*
# machine-id: empty, so systemd makes a new one at every boot of every VM.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id
echo localhost >/etc/hostname

# The network: systemd-networkd with the DHCP configuration cloud-init writes, DNS by resolved.
systemctl enable systemd-networkd.service

# Timers of a long-lived machine: package list updates and upgrades, the dpkg database backup,
# e2scrub, fstrim. A job's VM lives for one job.
systemctl mask apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service \
  dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer
# Login prompts: nobody logs in on a console (there is no password); jobs come in over SSH.
systemctl mask getty@tty1.service serial-getty@ttyS0.service
# cloud-init's hotplug listener: a job's VM gets no new devices.
systemctl disable cloud-init-hotplugd.socket

# The build's logs and caches.
rm -rf /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log /var/log/bootstrap.log \
  /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/cache/ldconfig/aux-cache
