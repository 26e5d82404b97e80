#!/bin/bash
# Build-time changes to Debian's Roundcube layout, so the image runs read-only from the rendered config:
# every config file Roundcube reads points into the live generation the entrypoint assembles.
set -euo pipefail
LIVE=/run/mail/webmail/live

# The stock config carries a des_key generated at build time (the same in every copy of the image) and includes
# dbconfig-common's database settings: both are replaced by the rendered config.inc.php.
rm -f /etc/roundcube/config.inc.php /etc/roundcube/debian-db.php /etc/roundcube/debian-db-roundcube.php
ln -s "$LIVE/config.inc.php" /etc/roundcube/config.inc.php
for plugin in managesieve markasjunk password; do
  ln -sfn "$LIVE/$plugin.inc.php" "/etc/roundcube/plugins/$plugin/config.inc.php"
done
# Our plugin (client_address) is found where Roundcube looks for plugins: INSTALL_PATH/plugins.
ln -s /usr/share/roundcube/plugins/client_address /var/lib/roundcube/plugins/client_address

# php's alternatives pulled Apache's PHP module in beside PHP-FPM; nothing here uses Apache.
DEBIAN_FRONTEND=noninteractive apt-get purge -y --auto-remove libapache2-mod-php8.4 apache2-bin >/dev/null
rm -rf /var/log/apt /var/log/dpkg.log /var/cache/apt/*.bin
# One name for PHP-FPM across PHP versions.
ln -s "$(find /usr/sbin -maxdepth 1 -name 'php-fpm[0-9]*' | head -n1)" /usr/local/sbin/php-fpm
# Nothing writes here at run time (temp_dir is /tmp, logs go to stdout).
rm -rf /var/lib/roundcube/temp /var/log/roundcube /var/lib/roundcube/logs
