<?xml version="1.0" encoding="utf-8"?>
<!-- Shown when a person opens a feed in a browser: a readable page that says
     what a feed is and how to follow it, instead of raw XML. Atom and RSS. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:atom="http://www.w3.org/2005/Atom" exclude-result-prefixes="atom">
<xsl:output method="html" encoding="utf-8" doctype-system="about:legacy-compat"/>
<xsl:template match="/">
<html lang="{{ site.language or 'en' }}">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<meta name="color-scheme" content="light dark"/>
<title><xsl:value-of select="(atom:feed/atom:title|rss/channel/title)[1]"/> (feed)</title>
<style>
:root { color-scheme: light dark; }
body { margin: 0 auto; max-width: 760px; padding: 0 20px 40px; font: 17px/1.55 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; overflow-wrap: anywhere; }
.hint { background: #fff8c5; color: #1f2328; border: 1px solid #d4a72c; border-radius: 6px; padding: 10px 14px; margin: 20px 0; }
code { font-size: 15px; }
li { margin: 0 0 10px; }
</style>
</head>
<body>
<p class="hint"><strong>This is a web feed.</strong> Copy this page's address into a feed reader (NetNewsWire, Feedly, Inoreader, newsboat…) to follow new stories, or <a href="{{ site.url('subscribe') }}">subscribe by email</a>.</p>
<h1><xsl:value-of select="(atom:feed/atom:title|rss/channel/title)[1]"/></h1>
<p><xsl:value-of select="(atom:feed/atom:subtitle|rss/channel/description)[1]"/></p>
<p><a href="{{ home }}">Visit {{ site.title }} →</a></p>
<ul>
<xsl:for-each select="atom:feed/atom:entry">
<li><a href="{atom:link[@rel='alternate' or not(@rel)][1]/@href}"><xsl:value-of select="atom:title"/></a><br/><small><xsl:value-of select="substring(atom:published|atom:updated, 1, 10)"/></small></li>
</xsl:for-each>
<xsl:for-each select="rss/channel/item">
<li><a href="{link}"><xsl:value-of select="title"/></a><br/><small><xsl:value-of select="pubDate"/></small></li>
</xsl:for-each>
</ul>
</body>
</html>
</xsl:template>
</xsl:stylesheet>
