<?php

/**
 * Sends the browser's address to Dovecot before LOGIN, as the IMAP ID field `x-originating-ip`, so Dovecot's auth
 * penalties, auth policy and logs see the user's address instead of the webmail pod's. Dovecot honours the field
 * only from `login_trusted_networks` and only before authentication: Roundcube 1.6 sends its own ID after login,
 * and only with imap_debug, so this uses the pre-authentication ID (`preauth_ident`, Roundcube #7860).
 */
class client_address extends rcube_plugin
{
    public function init()
    {
        $this->add_hook('storage_connect', [$this, 'storage_connect']);
    }

    public function storage_connect($args)
    {
        $address = rcube_utils::remote_addr();
        if ($address) {
            $args['preauth_ident'] = array_merge($args['preauth_ident'] ?? [], ['x-originating-ip' => $address]);
        }
        return $args;
    }
}
